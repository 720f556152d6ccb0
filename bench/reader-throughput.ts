/**
 * Reader throughput: reads every regular file of an image through the library from a local file,
 * then the same files through `squashfuse` + `cat`, and prints MB/s of file data for both.
 *
 * usage: node dist/bench/reader-throughput.js IMAGE [--chunk BYTES] [--parallel N] [--runs N] [--into] [--no-squashfuse]
 * The image file is read once first so both runs start with it in the page cache.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { FileSource } from '../src/r2/file.js';
import { SquashfsImage } from '../src/squashfs/index.js';
import type { Inode } from '../src/squashfs/types.js';

const execFileP = promisify(execFile);

interface FileJob {
  path: string;
  inode: Inode;
}

async function listFiles(image: SquashfsImage): Promise<FileJob[]> {
  const out: FileJob[] = [];
  const seen = new Set<number>();
  const visit = async (inode: Inode, path: string): Promise<void> => {
    if (inode.stat.type === 'file') {
      if (!seen.has(inode.stat.ino)) out.push({ path, inode });
      seen.add(inode.stat.ino);
      return;
    }
    if (inode.stat.type !== 'directory') return;
    for (const e of await image.readdir(inode)) await visit(await image.inode(e.ref), `${path}/${e.name}`);
  };
  await visit(await image.root(), '');
  return out;
}

async function libraryRun(
  imagePath: string,
  chunk: number,
  parallel: number,
  into: boolean,
): Promise<{ bytes: number; seconds: number; files: number }> {
  const image = await SquashfsImage.open(await FileSource.open(imagePath), { cacheBytes: 64 << 20 });
  const files = await listFiles(image);
  let next = 0;
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    // --into: one reused buffer, as the FUSE read path fills the kernel's buffer.
    const buffer = Buffer.allocUnsafe(chunk);
    while (next < files.length) {
      const f = files[next++]!;
      for (let off = 0; off < f.inode.stat.size; off += chunk) {
        bytes += into ? await image.readInto(f.inode, off, buffer) : (await image.read(f.inode, off, chunk)).length;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await image.close();
  return { bytes, seconds, files: files.length };
}

async function squashfuseRun(imagePath: string): Promise<{ seconds: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'sqfs-bench-mnt-'));
  await execFileP('squashfuse', [imagePath, dir]);
  try {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      // cat every regular file once (hard links would be read twice; the bench tree has few).
      const p = spawn('sh', ['-c', `find "${dir}" -type f -print0 | xargs -0 cat > /dev/null`], { stdio: 'inherit' });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
    });
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  } finally {
    await execFileP('fusermount', ['-u', dir]).catch(() => execFileP('umount', [dir]));
    await rmdir(dir).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      chunk: { type: 'string', default: String(1 << 20) },
      parallel: { type: 'string', default: '1' },
      'no-squashfuse': { type: 'boolean', default: false },
      runs: { type: 'string', default: '2' },
      into: { type: 'boolean', default: false },
    },
  });
  const imagePath = positionals[0];
  if (!imagePath)
    throw new Error('usage: reader-throughput IMAGE [--chunk BYTES] [--parallel N] [--runs N] [--no-squashfuse]');
  await readFile(imagePath); // warm the page cache
  const chunk = Number(values.chunk);
  const parallel = Number(values.parallel);
  let best = Infinity;
  let bytes = 0;
  for (let i = 0; i < Number(values.runs); i++) {
    const r = await libraryRun(imagePath, chunk, parallel, values.into);
    bytes = r.bytes;
    best = Math.min(best, r.seconds);
    console.log(
      `library run ${i + 1}: ${r.files} files, ${(r.bytes / 1e6).toFixed(0)} MB in ${r.seconds.toFixed(2)} s = ${(r.bytes / 1e6 / r.seconds).toFixed(0)} MB/s (chunk ${chunk}, parallel ${parallel}${values.into ? ', readInto' : ''})`,
    );
  }
  const libMBs = bytes / 1e6 / best;
  if (!values['no-squashfuse']) {
    const s = await squashfuseRun(imagePath);
    const fuseMBs = bytes / 1e6 / s.seconds;
    console.log(`squashfuse + cat: ${s.seconds.toFixed(2)} s = ${fuseMBs.toFixed(0)} MB/s`);
    console.log(`ratio library / squashfuse: ${(libMBs / fuseMBs).toFixed(2)}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

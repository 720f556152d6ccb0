/**
 * Reader throughput: reads every regular file of an image through the library from a local file,
 * then the same files through `squashfuse` + `cat`, and prints MB/s of file data for both.
 *
 * usage: node dist/bench/reader-throughput.js IMAGE [--chunk BYTES] [--parallel N] [--runs N] [--into] [--calibrate] [--no-squashfuse]
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
): Promise<{ bytes: number; seconds: number; cpuSeconds: number; files: number }> {
  const image = await SquashfsImage.open(await FileSource.open(imagePath), { cacheBytes: 64 << 20 });
  const files = await listFiles(image);
  let next = 0;
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const worker = async (): Promise<void> => {
    // --into: one reused buffer, as the FUSE read path fills the kernel's buffer.
    const buffer = Buffer.allocUnsafe(chunk);
    while (next < files.length) {
      const f = files[next++]!;
      for (let off = 0; off < f.inode.stat.size; off += chunk) {
        // (await first: `bytes += await x` would read `bytes` before the await and lose other workers' counts)
        const n = into ? await image.readInto(f.inode, off, buffer) : (await image.read(f.inode, off, chunk)).length;
        bytes += n;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await image.close();
  // CPU of this process (incl. libuv pool threads doing pread): comparable when the machine is busy.
  return { bytes, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, files: files.length };
}

/**
 * The machine's current speed, for reading the numbers on a shared box: raw lz4-napi block
 * decompression of 64 MiB of this image's file data (128 KiB blocks), in MB/s of output.
 */
async function lz4Calibration(imagePath: string): Promise<number> {
  const lz4 = await import('lz4-napi');
  const image = await SquashfsImage.open(await FileSource.open(imagePath));
  const files = (await listFiles(image)).sort((a, b) => b.inode.stat.size - a.inode.stat.size);
  const blocks: Buffer[] = [];
  let total = 0;
  for (const f of files) {
    for (let off = 0; off < f.inode.stat.size && total < 64 << 20; off += 128 << 10) {
      const raw = Buffer.from(await image.read(f.inode, off, 128 << 10));
      blocks.push(lz4.compressSync(raw));
      total += raw.length;
    }
    if (total >= 64 << 20) break;
  }
  await image.close();
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    for (const b of blocks) lz4.uncompressSync(b);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return total / 1e6 / best;
}

/** utime + stime of a process in seconds (from /proc/PID/stat). */
async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}

async function squashfuseRun(imagePath: string): Promise<{ seconds: number; cpuSeconds: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'sqfs-bench-mnt-'));
  // Foreground, so its CPU time can be read from /proc before it exits.
  const fuse = spawn('squashfuse', ['-f', imagePath, dir], { stdio: 'inherit' });
  try {
    for (let i = 0; !(await readFile('/proc/self/mounts', 'utf8')).includes(dir); i++) {
      if (i > 100) throw new Error('squashfuse did not mount');
      await new Promise((r) => setTimeout(r, 50));
    }
    const fuseCpu0 = await processCpuSeconds(fuse.pid!);
    const t0 = process.hrtime.bigint();
    const catCpu = await new Promise<number>((resolve, reject) => {
      // cat every regular file once (hard links would be read twice; the bench tree has few).
      const script = `TIMEFORMAT='%U %S'; time (find "${dir}" -type f -print0 | xargs -0 cat > /dev/null)`;
      const p = spawn('bash', ['-c', script], { stdio: ['ignore', 'inherit', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('exit', (code) => {
        const [u, sy] = err.trim().split('\n').pop()!.split(' ').map(Number);
        if (code === 0) resolve(u! + sy!);
        else reject(new Error(`cat exited ${code}: ${err}`));
      });
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const fuseCpu = (await processCpuSeconds(fuse.pid!)) - fuseCpu0;
    return { seconds, cpuSeconds: fuseCpu + catCpu };
  } finally {
    await execFileP('fusermount', ['-u', dir]).catch(() => execFileP('umount', [dir]));
    await new Promise((r) => (fuse.exitCode === null ? fuse.once('exit', r) : r(undefined)));
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
      calibrate: { type: 'boolean', default: false },
    },
  });
  const imagePath = positionals[0];
  if (!imagePath)
    throw new Error('usage: reader-throughput IMAGE [--chunk BYTES] [--parallel N] [--runs N] [--no-squashfuse]');
  await execFileP('sh', ['-c', 'cat "$1" > /dev/null', 'warm', imagePath]); // page cache warm, outside this process's heap
  const chunk = Number(values.chunk);
  const parallel = Number(values.parallel);
  let best = Infinity;
  let bestCpu = Infinity;
  let bytes = 0;
  const mbs = (b: number, s: number) => (b / 1e6 / s).toFixed(0);
  for (let i = 0; i < Number(values.runs); i++) {
    const r = await libraryRun(imagePath, chunk, parallel, values.into);
    bytes = r.bytes;
    best = Math.min(best, r.seconds);
    bestCpu = Math.min(bestCpu, r.cpuSeconds);
    console.log(
      `library run ${i + 1}: ${r.files} files, ${(r.bytes / 1e6).toFixed(0)} MB in ${r.seconds.toFixed(2)} s = ${mbs(r.bytes, r.seconds)} MB/s; ` +
        `${r.cpuSeconds.toFixed(2)} CPU-s = ${mbs(r.bytes, r.cpuSeconds)} MB per CPU-s (chunk ${chunk}, parallel ${parallel}${values.into ? ', readInto' : ''})`,
    );
  }
  if (values.calibrate)
    console.log(
      `calibration: raw lz4-napi block decompression now runs at ${(await lz4Calibration(imagePath)).toFixed(0)} MB/s`,
    );
  if (!values['no-squashfuse']) {
    const s = await squashfuseRun(imagePath);
    console.log(
      `squashfuse + cat: ${s.seconds.toFixed(2)} s = ${mbs(bytes, s.seconds)} MB/s; ${s.cpuSeconds.toFixed(2)} CPU-s = ${mbs(bytes, s.cpuSeconds)} MB per CPU-s`,
    );
    console.log(
      `ratio library / squashfuse: wall ${(s.seconds / best).toFixed(2)}, CPU ${(s.cpuSeconds / bestCpu).toFixed(2)}`,
    );
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

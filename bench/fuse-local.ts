/**
 * FUSE read throughput from a local image file: squashfs-r2 against squashfuse and squashfuse_ll on
 * the same 1 GiB lz4 image (4 x 256 MiB random files), plus the time `squashfs-r2 mount` takes to
 * return a usable mount.
 *
 *   npm run build && node dist/bench/fuse-local.js [--data-dir DIR] [--runs N]
 *
 * cold = page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before a fresh mount reads every
 * file; warm = the same files read again on the same mount. Files are read by `cat` processes, 4 in
 * parallel, so the serving process and the readers never share an event loop.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const MiB = 1 << 20;
const FILES = 4;
const FILE_BYTES = 256 * MiB;
const CLI = fileURLToPath(new URL('../../bin/squashfs-r2', import.meta.url));

type Peer = 'squashfs-r2' | 'squashfuse' | 'squashfuse_ll';
const PEERS: Peer[] = ['squashfs-r2', 'squashfuse', 'squashfuse_ll'];

async function buildImage(dataDir: string): Promise<string> {
  const image = join(dataDir, 'fuse-local-1g-lz4.sqsh');
  if (existsSync(image)) return image;
  const tree = join(dataDir, 'tree');
  await mkdir(tree, { recursive: true });
  for (let i = 0; i < FILES; i++) {
    await execFileP('sh', ['-c', `head -c ${FILE_BYTES} /dev/urandom > ${join(tree, `random-${i}.bin`)}`]);
  }
  await execFileP('mksquashfs', [tree, image, '-comp', 'lz4', '-noappend', '-quiet', '-no-progress']);
  return image;
}

async function mountPeer(peer: Peer, image: string, dir: string): Promise<number> {
  const started = performance.now();
  if (peer === 'squashfs-r2') await execFileP(CLI, ['mount', image, dir]);
  else await execFileP(peer, [image, dir]);
  // Usable = the kernel answers a lookup through the new mount.
  await execFileP('stat', [join(dir, 'random-0.bin')]);
  return performance.now() - started;
}

async function unmount(dir: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      await execFileP('fusermount3', ['-u', dir]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await execFileP('fusermount3', ['-u', '-z', dir]);
}

async function dropCaches(): Promise<void> {
  await execFileP('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/** Reads every file with `cat > /dev/null`, FILES in parallel; returns MB/s. */
async function readAll(dir: string): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from(
      { length: FILES },
      (_, i) =>
        new Promise<void>((done, fail) => {
          const cat = spawn('cat', [join(dir, `random-${i}.bin`)], { stdio: ['ignore', 'ignore', 'inherit'] });
          cat.on('exit', (code) => (code === 0 ? done() : fail(new Error(`cat exited ${code}`))));
        }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  return (FILES * FILE_BYTES) / MiB / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, runs: { type: 'string' } } });
  const dataDir = resolve(values['data-dir'] ?? join(tmpdir(), 'squashfs-r2-bench'));
  const runs = Number(values.runs ?? 3);
  await mkdir(dataDir, { recursive: true });
  const image = await buildImage(dataDir);
  const results: Record<Peer, { mountMs: number[]; cold: number[]; warm: number[] }> = {
    'squashfs-r2': { mountMs: [], cold: [], warm: [] },
    squashfuse: { mountMs: [], cold: [], warm: [] },
    squashfuse_ll: { mountMs: [], cold: [], warm: [] },
  };
  for (let run = 0; run < runs; run++) {
    for (const peer of PEERS) {
      const dir = await mkdtemp(join(tmpdir(), `bench-${peer}-`));
      try {
        await dropCaches();
        results[peer].mountMs.push(await mountPeer(peer, image, dir));
        results[peer].cold.push(await readAll(dir));
        results[peer].warm.push(await readAll(dir));
      } finally {
        await unmount(dir);
        await rmdir(dir);
      }
      process.stderr.write(
        `run ${run + 1}/${runs} ${peer}: cold ${results[peer].cold.at(-1)?.toFixed(0)} MB/s, warm ${results[peer].warm.at(-1)?.toFixed(0)} MB/s, mount ${results[peer].mountMs.at(-1)?.toFixed(0)} ms\n`,
      );
    }
  }
  const base = results.squashfuse;
  const rows = PEERS.map((peer) => {
    const r = results[peer];
    return {
      peer,
      mountMs: Math.round(median(r.mountMs)),
      coldMBps: Math.round(median(r.cold)),
      warmMBps: Math.round(median(r.warm)),
      coldVsSquashfuse: +(median(r.cold) / median(base.cold)).toFixed(2),
      warmVsSquashfuse: +(median(r.warm) / median(base.warm)).toFixed(2),
    };
  });
  console.table(rows);
  console.log(JSON.stringify({ image, runs, rows }, null, 2));
}

await main();

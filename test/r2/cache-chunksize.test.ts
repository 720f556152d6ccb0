import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCachedSource, type CacheOptions, type CachedSource } from '../../src/r2/cache.js';
import { FileObject } from '../../src/r2/file-object.js';
import { SquashfsImage } from '../../src/squashfs/index.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

/**
 * The measurement behind the default chunk size (opt-in: CACHE_BENCH=1, it takes about a minute).
 * A project-like tree (three real npm packages, ~45 MB, ~5k files) plus a 32 MiB random file, as a
 * gzip squashfs image, read through FileObject with an R2-like round trip (20 ms) and per-request
 * rate (100 MiB/s), by the real reader, for several chunk sizes. Each workload starts cold.
 */

const execFileP = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const RUN = process.env.CACHE_BENCH === '1';

let dir: string;
let imagePath: string;
let smallFiles: Array<{ path: string; size: number }> = [];

async function walk(img: SquashfsImage, path: string, out: Array<{ path: string; size: number }>): Promise<void> {
  for (const entry of await img.readdir(path || '/')) {
    const child = path ? `${path}/${entry.name}` : entry.name;
    const st = await img.stat(child);
    if ((st.mode & 0o170000) === 0o040000) await walk(img, child, out);
    else if ((st.mode & 0o170000) === 0o100000) out.push({ path: child, size: st.size });
  }
}

async function readAll(img: SquashfsImage, path: string, size: number): Promise<number> {
  let n = 0;
  for (let at = 0; at < size; at += 128 * KiB) n += (await img.read(path, at, Math.min(128 * KiB, size - at))).length;
  return n;
}

describe.runIf(RUN)('chunk size measurement', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cache-bench-'));
    const tree = join(dir, 'tree');
    await mkdir(tree);
    for (const pkg of ['@aws-sdk', '@smithy', 'typescript'])
      await cp(join(REPO_ROOT, 'node_modules', pkg), join(tree, pkg), { recursive: true });
    await writeFile(join(tree, 'random.bin'), randomBytes(32 * MiB));
    imagePath = join(dir, 'image.sqsh');
    await execFileP('mksquashfs', [tree, imagePath, '-comp', 'gzip', '-noappend', '-quiet', '-no-progress']);
    const remote = await FileObject.open(imagePath);
    const img = await SquashfsImage.open(await openCachedSource(remote));
    const all: Array<{ path: string; size: number }> = [];
    await walk(img, '', all);
    smallFiles = all.filter((f) => f.size < 64 * KiB);
    await img.close();
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports time, GETs and bytes per workload and chunk size', async () => {
    let seed = 1;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const picks = Array.from({ length: 150 }, () => smallFiles[Math.floor(rand() * smallFiles.length)]!);
    const offsets = Array.from({ length: 150 }, () => Math.floor(rand() * (32 * MiB - 4096)));
    const rows: string[] = [];
    // Plain chunk sizes (every fetch in whole chunks), then the default: 64 KiB chunks, small misses
    // widened to their 256 KiB unit.
    const configs: Array<[string, CacheOptions]> = [
      ...[64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB].map((chunkBytes): [string, CacheOptions] => [
        `${chunkBytes / KiB} KiB`,
        { chunkBytes },
      ]),
      ['default', {}],
    ];
    for (const [label, options] of configs) {
      const workloads: Record<string, (img: SquashfsImage) => Promise<void>> = {
        'open+walk': async (img) => void (await walk(img, '', [])),
        '150 random small files': async (img) => {
          for (const f of picks) await readAll(img, f.path, f.size);
        },
        '150 random small files x4 parallel': async (img) => {
          const queue = [...picks];
          await Promise.all(
            [0, 1, 2, 3].map(async () => {
              for (let f = queue.shift(); f; f = queue.shift()) await readAll(img, f.path, f.size);
            }),
          );
        },
        '150 random 4 KiB in 32 MiB file': async (img) => {
          for (const at of offsets) await img.read('random.bin', at, 4096);
        },
        'whole tree in order': async (img) => {
          const all: Array<{ path: string; size: number }> = [];
          await walk(img, '', all);
          for (const f of all) await readAll(img, f.path, f.size);
        },
      };
      for (const [name, run] of Object.entries(workloads)) {
        const remote = await FileObject.open(imagePath, { latencyMs: 20, bytesPerSecond: 100 * MiB });
        const t0 = performance.now();
        const source = await openCachedSource(remote, options);
        const img = await SquashfsImage.open(source);
        await run(img);
        const ms = performance.now() - t0;
        rows.push(
          `${label.padStart(9)} | ${name.padEnd(36)} | ${ms.toFixed(0).padStart(6)} ms | ` +
            `${String(remote.requests.length).padStart(5)} GETs | ${(remote.requestedBytes() / MiB).toFixed(1).padStart(6)} MiB`,
        );
        await img.close();
      }
    }
    console.log(rows.join('\n'));
    expect(rows.length).toBe(configs.length * 5);
  });

  it('reports the whole-tree read cold, with a warm disk cache, and after hydration', async () => {
    const cacheDir = await mkdtemp(join(dir, 'disk-'));
    const rows: string[] = [];
    const run = async (
      label: string,
      options: Parameters<typeof openCachedSource>[1],
      before?: (source: CachedSource) => Promise<unknown>,
    ) => {
      const remote = await FileObject.open(imagePath, { latencyMs: 20, bytesPerSecond: 100 * MiB, etag: '"bench"' });
      const t0 = performance.now();
      const source = await openCachedSource(remote, options);
      const img = await SquashfsImage.open(source);
      if (before) await before(source);
      const t1 = performance.now();
      const readsBefore = remote.requests.length;
      const all: Array<{ path: string; size: number }> = [];
      await walk(img, '', all);
      for (const f of all) await readAll(img, f.path, f.size);
      const t2 = performance.now();
      rows.push(
        `${label.padEnd(34)} | prepare ${(t1 - t0).toFixed(0).padStart(5)} ms | read ${(t2 - t1).toFixed(0).padStart(5)} ms | ` +
          `${remote.requests.length - readsBefore} GETs during the read, ${remote.requests.length} in all`,
      );
      await img.close();
    };
    await run('cold, memory only', {});
    await run('cold, filling the disk cache', { cacheDir });
    await run('warm disk cache (remount)', { cacheDir });
    await run('hydrate (fresh disk cache), then read', { cacheDir: await mkdtemp(join(dir, 'disk-')) }, (s) =>
      s.hydrate(),
    );
    console.log(rows.join('\n'));
    expect(rows.length).toBe(4);
  });
});

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open as openFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCachedSource, type CacheOptions } from '../../src/r2/cache.js';
import { FileObject, type FileObjectOptions } from '../../src/r2/file-object.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;

let dir: string;
let path: string;
let data: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cache-disk-test-'));
  path = join(dir, 'object.bin');
  data = randomBytes(12 * MiB + 777);
  await writeFile(path, data);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function freshCacheDir(): Promise<string> {
  return mkdtemp(join(dir, 'cache-'));
}

async function open(options: CacheOptions, objectOptions: FileObjectOptions = {}, file = path) {
  const remote = await FileObject.open(file, { etag: '"v1"', ...objectOptions });
  const source = await openCachedSource(remote, { tailBytes: 64 * KiB, ...options });
  return { remote, source };
}

function same(bytes: Uint8Array, at: number, of = data): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(of.subarray(at, at + bytes.length));
}

async function readEverything(source: { read(o: number, l: number): Promise<Uint8Array>; size: number }, of = data) {
  for (let at = 0; at < source.size; at += 100_000) {
    const len = Math.min(100_000, source.size - at);
    expect(same(await source.read(at, len), at, of), `bytes at ${at}`).toBe(true);
  }
}

const fetchCount = (remote: FileObject) => remote.requests.filter((r) => r.kind === 'fetch').length;

async function objectDirs(cacheDir: string): Promise<string[]> {
  return readdir(join(cacheDir, 'objects')).catch(() => []);
}

describe('persistent chunk cache', () => {
  it('a warm remount fetches nothing after the open round trip', async () => {
    const cacheDir = await freshCacheDir();
    const first = await open({ cacheDir });
    await first.source.retain(data.length - 200 * KiB, 200 * KiB);
    await readEverything(first.source);
    expect(fetchCount(first.remote)).toBeGreaterThan(0);
    await first.source.close();

    const second = await open({ cacheDir });
    expect(second.remote.requests.map((r) => r.kind)).toEqual(['head', 'tail']);
    await second.source.retain(data.length - 3 * MiB, 3 * MiB); // beyond the tail: served by the disk
    await readEverything(second.source);
    expect(fetchCount(second.remote)).toBe(0);
    const disk = second.source.stats().cache.disk!;
    expect(disk.hits).toBeGreaterThan(40);
    expect(disk.badChunks).toBe(0);
    await second.source.close();
  });

  it('another ETag (the object was replaced) does not use the cached chunks', async () => {
    const cacheDir = await freshCacheDir();
    const first = await open({ cacheDir });
    await readEverything(first.source);
    await first.source.close();
    const other = await open({ cacheDir }, { etag: '"v2"' });
    await other.source.read(5 * MiB, 1000);
    expect(fetchCount(other.remote)).toBe(1);
    expect(await objectDirs(cacheDir)).toHaveLength(2);
    await other.source.close();
  });

  it('an object without an ETag is not cached on disk', async () => {
    const cacheDir = await freshCacheDir();
    const remote = await FileObject.open(path);
    Object.defineProperty(remote, 'etag', { value: undefined });
    const noEtag = Object.assign(Object.create(remote) as FileObject, {
      open: async (h: number, t: number) => {
        const r = await remote.open(h, t);
        return { ...r, info: { size: r.info.size } };
      },
    });
    const source = await openCachedSource(noEtag, { cacheDir });
    expect(source.stats().cache.disk).toBeUndefined();
    expect(same(await source.read(1000, 1000), 1000)).toBe(true);
    await source.close();
  });

  it('crash leftovers never yield wrong bytes: bad data, marks without data, torn records', async () => {
    const cacheDir = await freshCacheDir();
    const first = await open({ cacheDir, chunkBytes: CHUNK }); // the damage below is placed by chunk index
    await readEverything(first.source);
    await first.source.close();
    const [key] = await objectDirs(cacheDir);
    const objectDir = join(cacheDir, 'objects', key!);

    // Chunk 3: bytes changed after it was marked (a lost or half-written page).
    const dataFile = await openFile(join(objectDir, 'data'), 'r+');
    await dataFile.write(Buffer.alloc(100, 0xee), 0, 100, 3 * CHUNK + 5000);
    // Chunk 7: data never written (crash between... or a hole punched) but a mark present.
    await dataFile.write(Buffer.alloc(CHUNK, 0), 0, CHUNK, 7 * CHUNK);
    await dataFile.close();
    // Chunk 9: a torn record (half of the 8 bytes).
    const index = await openFile(join(objectDir, 'index'), 'r+');
    await index.write(Buffer.from([0xde, 0xad]), 0, 2, 4096 + 9 * 8);
    // Chunk 11: record cleared (the chunk was written, the crash came before its mark).
    await index.write(Buffer.alloc(8), 0, 8, 4096 + 11 * 8);
    await index.close();

    const second = await open({ cacheDir, chunkBytes: CHUNK });
    await readEverything(second.source);
    const disk = second.source.stats().cache.disk!;
    expect(disk.badChunks).toBe(3); // 3, 7, 9 failed verification
    expect(fetchCount(second.remote)).toBe(4); // 3, 7, 9 and 11 fetched again
    await second.source.close();

    // And they were repaired: a third mount reads nothing.
    const third = await open({ cacheDir, chunkBytes: CHUNK });
    await readEverything(third.source);
    expect(fetchCount(third.remote)).toBe(0);
    await third.source.close();
  });

  it('a size limit evicts whole objects, least recently used first, and stops the current one growing', async () => {
    const cacheDir = await freshCacheDir();
    const otherPath = join(dir, 'other.bin');
    const otherData = randomBytes(6 * MiB);
    await writeFile(otherPath, otherData);

    const a = await open({ cacheDir, cacheDirMaxBytes: 64 * MiB });
    await readEverything(a.source);
    await a.source.close();
    expect(await objectDirs(cacheDir)).toHaveLength(1);

    // 8 MiB limit: the 12 MiB object A goes, B (6 MiB) fits.
    const b = await open({ cacheDir, cacheDirMaxBytes: 8 * MiB }, {}, otherPath);
    await readEverything(b.source, otherData);
    expect(b.source.stats().cache.disk!.evictedObjects).toBe(1);
    await b.source.close();
    expect(await objectDirs(cacheDir)).toHaveLength(1);

    // 2 MiB limit: B cannot fit; it stops growing past the limit (checked every 64 MiB written and at open).
    const b2 = await open({ cacheDir, cacheDirMaxBytes: 2 * MiB }, {}, otherPath);
    expect(b2.source.stats().cache.disk!.writable).toBe(false);
    await readEverything(b2.source, otherData);
    await b2.source.close();
  });

  it('a full disk stops caching and never corrupts reads', async (ctx) => {
    const mnt = await mkdtemp(join(dir, 'tmpfs-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
    } catch {
      ctx.skip();
      return;
    }
    try {
      const cacheDir = join(mnt, 'cache');
      await mkdir(cacheDir);
      const first = await open({ cacheDir });
      await readEverything(first.source);
      const disk = first.source.stats().cache.disk!;
      await first.source.close();
      expect(disk.writable).toBe(false);
      expect(first.source.stats().cache.disk!.writeErrors).toBeGreaterThan(0);
      const second = await open({ cacheDir });
      await readEverything(second.source);
      expect(second.source.stats().cache.disk!.hits).toBeGreaterThan(0);
      expect(fetchCount(second.remote)).toBeGreaterThan(0);
      await second.source.close();
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});

describe('property: the disk cache never returns wrong bytes', () => {
  it('random reads across remounts with random damage to the cache files in between', async () => {
    const cacheDir = await freshCacheDir();
    let seed = 2024;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 8; round++) {
      const { remote, source } = await open({ cacheDir, cacheBytes: pickOne(rand, [2 * MiB, 8 * MiB]) });
      remote.setFailureRule(() => (rand() < 0.03 ? new Error('injected') : undefined));
      const reads = Array.from({ length: 40 }, () => {
        const len = 1 + Math.floor(rand() * 400 * KiB);
        const at = Math.floor(rand() * (data.length - len));
        return source.read(at, len).then(
          (bytes) => expect(same(bytes, at), `round ${round} read at ${at}`).toBe(true),
          (e: Error) => expect(e.message).toBe('injected'),
        );
      });
      await Promise.all(reads);
      if (rand() < 0.3) await source.hydrate();
      await source.close();
      // Damage: flip bytes in the data file, scribble over index records, or truncate either file.
      const [key] = await objectDirs(cacheDir);
      const objectDir = join(cacheDir, 'objects', key!);
      for (let k = 0; k < 5; k++) {
        const file = rand() < 0.5 ? 'data' : 'index';
        const handle = await openFile(join(objectDir, file), 'r+');
        const { size } = await handle.stat();
        const what = rand();
        if (what < 0.8 && size > 0) {
          const at =
            file === 'index' ? 4096 + Math.floor(rand() * Math.max(1, size - 4096)) : Math.floor(rand() * size);
          await handle.write(randomBytes(1 + Math.floor(rand() * 16)), 0, undefined, at);
        } else {
          await handle.truncate(Math.floor(rand() * size));
        }
        await handle.close();
      }
    }
  });
});

function pickOne<T>(rand: () => number, xs: T[]): T {
  return xs[Math.floor(rand() * xs.length)]!;
}

describe('hydration', () => {
  it('fetches the whole object into the disk cache in large ranges; afterwards nothing goes remote', async () => {
    const cacheDir = await freshCacheDir();
    const { remote, source } = await open({ cacheDir, hydrate: true, cacheBytes: 8 * MiB }, { latencyMs: 5 });
    const result = await source.hydrate();
    expect(result.state).toBe('done');
    expect(result.doneBytes).toBe(data.length);
    const gets = remote.requests.filter((r) => r.kind === 'fetch');
    expect(gets.length).toBeLessThanOrEqual(3); // 12 MiB in 8 MiB ranges
    expect(Math.max(...gets.map((g) => g.length))).toBe(8 * MiB);
    remote.resetRequests();
    await readEverything(source);
    expect(fetchCount(remote)).toBe(0);
    // Hydration into the disk left the memory cache to the readers.
    expect(source.stats().cache.peakDataBytes).toBeLessThanOrEqual(8 * MiB);
    await source.close();
  });

  it('never delays a foreground read', async () => {
    const cacheDir = await freshCacheDir();
    const { remote, source } = await open(
      { cacheDir, hydrateRequestBytes: 2 * MiB, maxBackgroundFetches: 2, maxConcurrentFetches: 3 },
      { latencyMs: 30, bytesPerSecond: 20 * MiB },
    );
    const done = source.hydrate();
    await new Promise((r) => setTimeout(r, 50));
    expect(source.stats().cache.hydration!.state).toBe('running');
    const at = 11 * MiB + 4321;
    const before = remote.requests.length;
    const t0 = performance.now();
    expect(same(await source.read(at, 4096), at)).toBe(true);
    const ms = performance.now() - t0;
    const index = remote.requests.findIndex((r, k) => k >= before && r.offset <= at && r.offset + r.length > at);
    expect(index).toBe(before); // its GET went first, before queued hydration ranges
    expect(ms).toBeLessThan(30 + 100 + 200); // one round trip + transfer, not a 2 MiB hydration GET queue
    expect((await done).state).toBe('done');
    await source.close();
  });

  it('in memory when the object fits the cache; refused with a clear error when it does not', async () => {
    const fits = await open({ cacheBytes: 16 * MiB });
    expect((await fits.source.hydrate()).state).toBe('done');
    fits.remote.resetRequests();
    await readEverything(fits.source);
    expect(fetchCount(fits.remote)).toBe(0);
    await fits.source.close();

    const remote = await FileObject.open(path, { etag: '"v1"' });
    await expect(openCachedSource(remote, { cacheBytes: 4 * MiB, hydrate: true })).rejects.toThrow(
      /hydrate needs a cache directory/,
    );
    await remote.close();
  });

  it('a failed range is retried; a persistent failure ends incomplete and reads still work', async () => {
    const cacheDir = await freshCacheDir();
    const { remote, source } = await open({ cacheDir });
    remote.setFailureRule((r) => (r.kind === 'fetch' && r.offset < 8 * MiB ? new Error('injected') : undefined));
    const result = await source.hydrate();
    expect(result.state).toBe('incomplete');
    expect(result.failedRequests).toBe(2); // first pass and the retry
    expect(result.doneBytes).toBeLessThan(data.length);
    expect(result.doneBytes).toBeGreaterThanOrEqual(data.length - 8 * MiB); // everything past the first range
    remote.setFailureRule(undefined);
    await readEverything(source);
    await source.close();
  });
});

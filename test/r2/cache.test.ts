import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCachedSource, type CacheOptions } from '../../src/r2/cache.js';
import { FileObject, type FileObjectOptions } from '../../src/r2/file-object.js';

const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;
let path: string;
let data: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cache-test-'));
  path = join(dir, 'object.bin');
  data = randomBytes(24 * MiB + 12_345); // not chunk-aligned: the last chunk is partial
  await writeFile(path, data);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function open(options: CacheOptions = {}, objectOptions: FileObjectOptions = {}) {
  const remote = await FileObject.open(path, objectOptions);
  const source = await openCachedSource(remote, options);
  return { remote, source };
}

/** Byte equality without vitest's slow element-wise diff of large buffers. */
function expectBytes(actual: Uint8Array, start: number, end = data.length) {
  const ok = Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(data.subarray(start, end));
  expect(ok, `bytes [${start}, ${end}) differ from the file`).toBe(true);
}

function fetches(remote: FileObject) {
  return remote.requests.filter((r) => r.kind === 'fetch');
}

describe('open and retain', () => {
  it('opens in one round trip: a head and a tail request issued in parallel', async () => {
    const { remote, source } = await open({}, { latencyMs: 20 });
    expect(remote.requests.map((r) => r.kind)).toEqual(['head', 'tail']);
    const [head, tail] = remote.requests;
    expect(tail!.startedAt).toBeLessThan(head!.endedAt!); // both in flight at once
    expect(remote.maxConcurrent).toBe(2);
    expect(source.size).toBe(data.length);
    expect(head!.length).toBe(256 * KiB);
    expect(tail).toMatchObject({ offset: data.length - MiB, length: MiB });
    await source.close();
  });

  it('retain of a span the tail covers costs no request, and reads of it stay local', async () => {
    const { remote, source } = await open();
    remote.resetRequests();
    const start = data.length - 700 * KiB;
    await source.retain(start, 600 * KiB);
    expect(remote.requests).toHaveLength(0);
    expectBytes(await source.read(start + 5, 100_000), start + 5, start + 100_005);
    expect(remote.requests).toHaveLength(0);
    expect(source.stats().cache.pinnedBytes).toBe(600 * KiB);
    await source.close();
  });

  it('retain fetches exactly the missing part of the metadata span in one request and pins it', async () => {
    const { remote, source } = await open({ tailBytes: 64 * KiB });
    remote.resetRequests();
    const start = data.length - 3 * MiB - 1000;
    await source.retain(start, data.length - start);
    expect(remote.requests).toHaveLength(1);
    expect(remote.requests[0]).toMatchObject({ offset: start, length: data.length - 64 * KiB - start });
    expectBytes(await source.read(start, data.length - start), start);
    expect(remote.requests).toHaveLength(1);
    expect(source.stats().cache.pinnedBytes).toBe(data.length - start);
    await source.close();
  });

  it('tail bytes outside the retained span go back to the LRU as data', async () => {
    const { remote, source } = await open({ tailBytes: 2 * MiB, cacheBytes: 8 * MiB });
    const metaStart = data.length - 100 * KiB;
    await source.retain(metaStart, 100 * KiB);
    expect(source.stats().cache.pinnedBytes).toBe(100 * KiB);
    remote.resetRequests();
    // A whole chunk between the tail start and the metadata was kept as data: no request.
    const c = Math.ceil((data.length - 2 * MiB) / (256 * KiB)) * 256 * KiB;
    expectBytes(await source.read(c, 1000), c, c + 1000);
    expect(remote.requests).toHaveLength(0);
    await source.close();
  });

  it('rejects a transport that returns the wrong number of bytes at open', async () => {
    const remote = await FileObject.open(path);
    const broken = Object.assign(Object.create(remote) as FileObject, {
      open: async (h: number, t: number) => {
        const r = await remote.open(h, t);
        return { ...r, tail: r.tail.subarray(1) };
      },
    });
    await expect(openCachedSource(broken)).rejects.toThrow(/expected/);
    await remote.close();
  });
});

describe('chunk cache', () => {
  it('4 reads of one chunk cost 1 fetch', async () => {
    const { remote, source } = await open();
    remote.resetRequests();
    const at = 5 * MiB + 100;
    for (let i = 3; i >= 0; i--) {
      expectBytes(await source.read(at + i * 50_000, 4096), at + i * 50_000, at + i * 50_000 + 4096);
    }
    expect(fetches(remote)).toHaveLength(1);
    expect(fetches(remote)[0]).toMatchObject({ offset: 5 * MiB, length: 256 * KiB });
    const stats = source.stats().cache;
    expect(stats.misses).toBe(1);
    expect(stats.hits).toBe(3);
    await source.close();
  });

  it('concurrent readers of one chunk share one fetch', async () => {
    const { remote, source } = await open({}, { latencyMs: 30 });
    remote.resetRequests();
    const at = 9 * MiB;
    const offsets = Array.from({ length: 10 }, (_, i) => at + (9 - i) * 20_000); // not a forward stream
    const results = await Promise.all(offsets.map((o) => source.read(o, 5000)));
    for (const [i, r] of results.entries()) expectBytes(r, offsets[i]!, offsets[i]! + 5000);
    expect(fetches(remote)).toHaveLength(1);
    expect(source.stats().cache.joins).toBe(9);
    await source.close();
  });

  it('coalesces the misses of one read, bridging a small cached gap', async () => {
    const chunk = 256 * KiB;
    const { remote, source } = await open();
    await source.read(7 * chunk, 10); // chunk 7 cached
    remote.resetRequests();
    const out = await source.read(5 * chunk, 5 * chunk); // chunks 5..9
    expectBytes(out, 5 * chunk, 10 * chunk);
    expect(fetches(remote).map((r) => [r.offset / chunk, r.length / chunk])).toEqual([[5, 5]]);
    await source.close();
  });

  it('splits around a cached gap when bridging is disabled', async () => {
    const chunk = 256 * KiB;
    const { remote, source } = await open({ coalesceGapBytes: 0 });
    await source.read(7 * chunk, 10);
    remote.resetRequests();
    const out = await source.read(5 * chunk, 5 * chunk);
    expectBytes(out, 5 * chunk, 10 * chunk);
    expect(fetches(remote).map((r) => [r.offset / chunk, r.length / chunk])).toEqual([
      [5, 2],
      [8, 2],
    ]);
    await source.close();
  });

  it('reads the partial last chunk and rejects reads outside the object', async () => {
    const { source } = await open({ tailBytes: 0 });
    const at = data.length - 5000;
    expectBytes(await source.read(at, 5000), at);
    expect((await source.read(at, 0)).length).toBe(0);
    await expect(source.read(at, 5001)).rejects.toThrow(RangeError);
    await expect(source.read(-1, 1)).rejects.toThrow(RangeError);
    await source.close();
    await expect(source.read(0, 1)).rejects.toThrow(/closed/);
  });

  it('random 4 KiB reads trigger no readahead and fetch at most 2x the bytes they need', async () => {
    // With 4 KiB chunks an unaligned 4 KiB read touches at most two chunks: <= 2x by construction,
    // unless readahead fires. With the default chunk size, exactly the touched chunks are fetched.
    for (const chunkBytes of [4 * KiB, 256 * KiB]) {
      const { remote, source } = await open({ chunkBytes, headBytes: 0, tailBytes: 0 });
      let seed = 12345;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const touched = new Set<number>();
      const n = 400;
      for (let i = 0; i < n; i++) {
        const at = Math.floor(rand() * (data.length - 4096));
        expectBytes(await source.read(at, 4096), at, at + 4096);
        touched.add(Math.floor(at / chunkBytes));
        touched.add(Math.floor((at + 4095) / chunkBytes));
      }
      const stats = source.stats().cache;
      expect(stats.readaheadBytes).toBe(0);
      expect(stats.fetchedBytes).toBe(touched.size * chunkBytes);
      if (chunkBytes === 4 * KiB) expect(stats.fetchedBytes).toBeLessThanOrEqual(2 * n * 4096);
      expect(fetches(remote).length).toBeLessThanOrEqual(touched.size);
      await source.close();
    }
  });

  it('by default a random 128 KiB block costs at most 192 KiB (just its 64 KiB chunks), a small read its 256 KiB unit', async () => {
    const { remote, source } = await open({ headBytes: 0, tailBytes: 0 });
    let seed = 777;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const n = 64;
    for (let i = 0; i < n; i++) {
      // An uncompressed 128 KiB squashfs block sits at any offset (the image's data starts after the superblock).
      const at = 96 + Math.floor(rand() * ((data.length - 256 * KiB) / (128 * KiB))) * 128 * KiB;
      expectBytes(await source.read(at, 128 * KiB), at, at + 128 * KiB);
    }
    const random = source.stats().cache;
    expect(random.readaheadBytes).toBe(0);
    expect(random.fetchedBytes).toBeLessThanOrEqual(n * 192 * KiB);
    remote.resetRequests();
    // A small read (a packed small file, a fragment) brings its aligned 256 KiB unit in one GET.
    const at = 20 * MiB + 70 * KiB;
    expectBytes(await source.read(at, 3000), at, at + 3000);
    expect(fetches(remote)).toEqual([expect.objectContaining({ offset: 20 * MiB, length: 256 * KiB })]);
    expectBytes(await source.read(20 * MiB + 200 * KiB, 5000), 20 * MiB + 200 * KiB, 20 * MiB + 200 * KiB + 5000);
    expect(fetches(remote)).toHaveLength(1);
    await source.close();
  });
});

describe('failures', () => {
  it('a failed fetch rejects every waiter, caches nothing, and the next read retries', async () => {
    const { remote, source } = await open({}, { latencyMs: 20 });
    remote.resetRequests();
    const boom = new Error('503 SlowDown (injected)');
    remote.failNext(1, boom);
    const at = 3 * MiB;
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => source.read(at + (4 - i) * 40_000, 100)),
    );
    expect(results.every((r) => r.status === 'rejected' && r.reason === boom)).toBe(true);
    expect(fetches(remote)).toHaveLength(1);
    expect(source.stats().cache.cachedBytes - source.stats().cache.pinnedBytes).toBe(256 * KiB); // only the head chunk
    expectBytes(await source.read(at, 100), at, at + 100);
    expect(fetches(remote)).toHaveLength(2);
    await source.close();
  });

  it('a failed open rejects', async () => {
    const remote = await FileObject.open(path);
    remote.failNext(1, new Error('403 AccessDenied'));
    await expect(openCachedSource(remote)).rejects.toThrow('403 AccessDenied');
    await remote.close();
  });

  it('close rejects reads still waiting', async () => {
    const { source } = await open({}, { latencyMs: 200 });
    const pending = expect(source.read(11 * MiB, 10)).rejects.toThrow(/closed/);
    await new Promise((r) => setTimeout(r, 20));
    await source.close();
    await pending;
  });
});

describe('memory and eviction', () => {
  it('a 4 MiB cache stays within its budget under churn and every byte read equals the file', async () => {
    const cacheBytes = 4 * MiB;
    const { remote, source } = await open({ cacheBytes, tailBytes: 256 * KiB }, { latencyMs: 1 });
    const metaStart = data.length - 256 * KiB;
    await source.retain(metaStart, 256 * KiB);
    let seed = 99;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // Mixed: sequential sweeps (readahead) and random bursts, concurrently.
    const sequential = (async () => {
      for (let at = 0; at + 64 * KiB < 20 * MiB; at += 64 * KiB) {
        expect(Buffer.from(await source.read(at, 64 * KiB)).equals(data.subarray(at, at + 64 * KiB))).toBe(true);
      }
    })();
    const random = (async () => {
      for (let i = 0; i < 300; i++) {
        const len = 1 + Math.floor(rand() * 300 * KiB);
        const at = Math.floor(rand() * (data.length - len));
        expect(Buffer.from(await source.read(at, len)).equals(data.subarray(at, at + len))).toBe(true);
      }
    })();
    await Promise.all([sequential, random]);
    const stats = source.stats().cache;
    expect(stats.evictions).toBeGreaterThan(0);
    // Evicted chunks' buffers were filled again with other chunks (util/arena.ts), and there were never
    // more buffers than the cache held at its peak: the bytes checked above came through reused memory.
    expect(stats.chunkBuffers.reused).toBeGreaterThan(100);
    expect(stats.chunkBuffers.allocated * 64 * KiB).toBeLessThanOrEqual(stats.peakDataBytes + 64 * KiB);
    // The data budget holds (only a foreground fetch may overshoot, by less than one read's size).
    expect(stats.peakDataBytes).toBeLessThanOrEqual(cacheBytes + 600 * KiB);
    expect(stats.cachedBytes).toBeLessThanOrEqual(cacheBytes + stats.pinnedBytes);
    // Pinned metadata survived all of it.
    remote.resetRequests();
    expect(Buffer.from(await source.read(metaStart, 256 * KiB)).equals(data.subarray(metaStart))).toBe(true);
    expect(remote.requests).toHaveLength(0);
    await source.close();
  });

  it('an exact small read fetches only the chunk it covers; a plain one brings its whole miss unit', async () => {
    const { remote, source } = await open({ chunkBytes: 64 * KiB, missUnitBytes: 256 * KiB });
    remote.resetRequests();
    const at = 8 * MiB + 70 * KiB; // inside chunk 129 of unit [8 MiB, 8 MiB + 256 KiB)
    const exact = Buffer.alloc(4096);
    await source.readInto(at, exact, { exact: true });
    expectBytes(exact, at, at + 4096);
    expect(fetches(remote).map((r) => [r.offset, r.length])).toEqual([[8 * MiB + 64 * KiB, 64 * KiB]]);
    remote.resetRequests();
    const plain = Buffer.alloc(4096);
    await source.readInto(at + 2 * MiB, plain);
    expectBytes(plain, at + 2 * MiB, at + 2 * MiB + 4096);
    expect(fetches(remote).map((r) => [r.offset, r.length])).toEqual([[10 * MiB, 256 * KiB]]);
    await source.close();
  });

  it('a chunk evicted (and its buffer given back) before its reader copied it is fetched again, not copied', async () => {
    // 2 chunks of cache; a 100-byte read brings its whole 4-chunk miss unit, so storing chunks 2 and 3
    // evicts 0 and 1 in the same step that hands them to their readers.
    const { remote, source } = await open({ cacheBytes: 128 * KiB, chunkBytes: 64 * KiB, missUnitBytes: 256 * KiB });
    remote.resetRequests();
    const at = 4 * MiB; // away from the head and tail fetched at open
    const [first, second] = await Promise.all([source.read(at + 10, 100), source.read(at + 64 * KiB + 10, 100)]);
    expectBytes(first!, at + 10, at + 110);
    expectBytes(second!, at + 64 * KiB + 10, at + 64 * KiB + 110);
    const got = fetches(remote);
    expect(got[0]).toMatchObject({ offset: at, length: 256 * KiB });
    expect(got.length).toBeGreaterThan(1); // the re-read
    expect(got.slice(1).every((r) => r.offset >= at && r.offset < at + 128 * KiB)).toBe(true);
    await source.close();
  });

  it('pinned metadata survives heavy data churn', async () => {
    const { remote, source } = await open({ cacheBytes: 2 * MiB, tailBytes: 64 * KiB });
    const metaStart = data.length - 1500 * KiB;
    await source.retain(metaStart, 1500 * KiB);
    for (let at = 0; at < 16 * MiB; at += 128 * KiB) await source.read(at, 128 * KiB);
    expect(source.stats().cache.evictions).toBeGreaterThan(10);
    remote.resetRequests();
    for (let at = metaStart; at < data.length; at += 50_000) {
      const len = Math.min(50_000, data.length - at);
      expect(Buffer.from(await source.read(at, len)).equals(data.subarray(at, at + len))).toBe(true);
    }
    expect(remote.requests).toHaveLength(0);
    await source.close();
  });
});

describe('property: bytes returned always equal the file', () => {
  it('random reads under random configurations, with concurrency and injected failures', async () => {
    let seed = 4242;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
    for (let round = 0; round < 6; round++) {
      const options: CacheOptions = {
        chunkBytes: pick([4 * KiB, 64 * KiB, 256 * KiB, 1 * MiB]),
        cacheBytes: pick([4 * MiB, 8 * MiB, 64 * MiB]),
        tailBytes: pick([0, 4 * KiB, 1 * MiB]),
        coalesceGapBytes: pick([0, 512 * KiB]),
        maxConcurrentFetches: pick([1, 4, 16]),
      };
      const { remote, source } = await open(options, { latencyMs: pick([0, 2]) });
      remote.setFailureRule(() => (rand() < 0.05 ? new Error('injected') : undefined));
      const metaStart = Math.floor(data.length * (0.8 + rand() * 0.15));
      await source.retain(metaStart, data.length - metaStart).catch(() => {}); // may hit an injected failure
      let sequentialAt = Math.floor(rand() * 4 * MiB);
      for (let batch = 0; batch < 15; batch++) {
        const reads = Array.from({ length: 1 + Math.floor(rand() * 6) }, () => {
          let at: number;
          let len: number;
          if (rand() < 0.5) {
            len = 1 + Math.floor(rand() * 200 * KiB);
            at = Math.min(sequentialAt, data.length - len);
            sequentialAt = at + len;
          } else {
            len = Math.floor(rand() * (rand() < 0.1 ? 3 * MiB : 64 * KiB));
            at = Math.floor(rand() * (data.length - len));
          }
          return source.read(at, len).then(
            (bytes) => expect(Buffer.from(bytes).equals(data.subarray(at, at + len))).toBe(true),
            (e: Error) => expect(e.message).toBe('injected'),
          );
        });
        await Promise.all(reads);
      }
      await source.close();
    }
  });
});

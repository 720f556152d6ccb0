import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCachedSource } from '../../src/r2/cache.js';
import { FileObject } from '../../src/r2/file-object.js';
import { SequentialDetector } from '../../src/r2/readahead.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('SequentialDetector', () => {
  const options = {
    initialWindowBytes: 1 * MiB,
    maxWindowBytes: 64 * MiB,
    forwardSlackBytes: 32 * KiB,
    maxStreams: 8,
    minSequentialReads: 3,
  };

  it('grows the window 1 -> 2 -> 4 -> ... -> 64 MiB for a sequential reader and keeps it there', () => {
    const d = new SequentialDetector(options, 1 << 30);
    const windows: number[] = [];
    for (let at = 0; at < 400 * MiB; at += 128 * KiB) {
      const plan = d.observe(at, 128 * KiB);
      if (plan) windows.push(plan.windowBytes / MiB);
    }
    expect(windows.slice(0, 8)).toEqual([1, 2, 4, 8, 16, 32, 64, 64]);
  });

  it('with growthFactor 4: 1 -> 4 -> 16 -> 64 MiB', () => {
    const d = new SequentialDetector({ ...options, growthFactor: 4 }, 1 << 30);
    const windows: number[] = [];
    for (let at = 0; at < 400 * MiB; at += 128 * KiB) {
      const plan = d.observe(at, 128 * KiB);
      if (plan) windows.push(plan.windowBytes / MiB);
    }
    expect(windows.slice(0, 5)).toEqual([1, 4, 16, 64, 64]);
  });

  it('never plans readahead for random reads', () => {
    const d = new SequentialDetector(options, 1 << 30);
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 10_000; i++) expect(d.observe(Math.floor(rand() * (1 << 30)), 4096)).toBeUndefined();
  });

  it('tolerates slightly out-of-order blocks and tracks interleaved streams', () => {
    const d = new SequentialDetector(options, 1 << 30);
    const a = 0;
    const b = 500 * MiB;
    const plans = [];
    for (let i = 0; i < 6; i++) {
      plans.push(d.observe(a + i * 64 * KiB, 64 * KiB));
      plans.push(d.observe(b + i * 64 * KiB + (i % 2 ? 16 * KiB : 0), 48 * KiB)); // small holes
    }
    const streams = new Set(plans.filter((p) => p).map((p) => p!.streamId));
    expect(streams.size).toBe(2);
  });

  it('the tiny adjacent reads of an image open (superblock, compression options) start no readahead', () => {
    const d = new SequentialDetector({ ...options, minStreamBytes: 64 * KiB }, 1 << 30);
    expect([d.observe(0, 96), d.observe(96, 2), d.observe(98, 8), d.observe(106, 2)]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    // The same stream, once it has read real data, does get a window.
    const plans = [0, 1, 2].map((i) => d.observe(108 + i * 128 * KiB, 128 * KiB));
    expect(plans.some((p) => p !== undefined)).toBe(true);
  });

  it('streams share one budget: windows never plan more than is available, and split it fairly', () => {
    const budget = 8 * MiB;
    const d = new SequentialDetector({ ...options, budgetBytes: budget, unitBytes: 256 * KiB }, 1 << 30);
    const bases = [0, 1, 2, 3].map((i) => i * 100 * MiB);
    const next = bases.map(() => 0);
    const planned = bases.map(() => 0);
    for (let step = 0; step < 200; step++) {
      for (let s = 0; s < bases.length; s++) {
        const outstanding = planned.reduce((sum, p, i) => sum + Math.max(0, p - next[i]!), 0);
        const plan = d.observe(bases[s]! + next[s]!, 128 * KiB, budget - outstanding);
        next[s]! += 128 * KiB;
        if (!plan) continue;
        expect(plan.end - plan.start).toBeLessThanOrEqual(budget - outstanding);
        expect(plan.windowBytes).toBeLessThanOrEqual(budget / 4);
        planned[s] = plan.end - bases[s]!;
      }
    }
    for (let s = 0; s < bases.length; s++) expect(planned[s]).toBeGreaterThan(next[s]!); // every stream kept a window
  });

  it('streams no longer read stop taking a share: a finished walk leaves the next file its whole window', () => {
    let clock = 0;
    const budget = 128 * MiB;
    const d = new SequentialDetector({ ...options, budgetBytes: budget, unitBytes: 1 * MiB, now: () => clock }, 1 << 30);
    // Two earlier readers (a tree walk's) read a little each and stop with readahead unread.
    for (const base of [600 * MiB, 700 * MiB]) for (let i = 0; i < 40; i++) d.observe(base + i * 128 * KiB, 128 * KiB);
    const windowsWhile = (ms: number): number => {
      clock += ms;
      let widest = 0;
      for (let at = 0; at < 300 * MiB; at += 128 * KiB) {
        const plan = d.observe(at, 128 * KiB);
        if (plan) widest = Math.max(widest, plan.windowBytes);
      }
      return widest;
    };
    // Read at once, they are live readers and the budget is split three ways (the fair share)...
    const d2 = new SequentialDetector({ ...options, budgetBytes: budget, unitBytes: 1 * MiB, now: () => 0 }, 1 << 30);
    for (const base of [600 * MiB, 700 * MiB]) for (let i = 0; i < 40; i++) d2.observe(base + i * 128 * KiB, 128 * KiB);
    let shared = 0;
    for (let at = 0; at < 300 * MiB; at += 128 * KiB) shared = Math.max(shared, d2.observe(at, 128 * KiB)?.windowBytes ?? 0);
    expect(shared).toBeLessThanOrEqual(Math.ceil(budget / 3));
    // ... but a second later they are idle, and the new reader's window reaches the maximum.
    expect(windowsWhile(1000)).toBe(64 * MiB);
  });

  it('a window is topped up in whole units (a part-unit step would cost an extra one-unit GET each time)', () => {
    const unit = 1 * MiB;
    // A share of a third of 128 MiB: 42.67 MiB, whose eighth is not a whole MiB.
    const d = new SequentialDetector(
      { ...options, budgetBytes: 128 * MiB, unitBytes: unit, topUpsPerWindow: 8, now: () => 0 },
      1 << 30,
    );
    for (const base of [600 * MiB, 700 * MiB]) for (let i = 0; i < 40; i++) d.observe(base + i * 128 * KiB, 128 * KiB);
    let steps = 0;
    for (let at = 0; at < 300 * MiB; at += 128 * KiB) {
      const plan = d.observe(at, 128 * KiB);
      if (!plan) continue;
      steps++;
      expect(plan.stepBytes % unit).toBe(0);
      expect((plan.end - plan.start) % unit === 0 || plan.end === 1 << 30).toBe(true);
    }
    expect(steps).toBeGreaterThan(10);
  });

  it("a window stops where another live stream began: files lie back to back, the next one is another reader's", () => {
    const d = new SequentialDetector(options, 1 << 30);
    const next = 10 * MiB;
    for (let at = next; at < next + 4 * MiB; at += 128 * KiB) d.observe(at, 128 * KiB); // a second reader is well into the next file
    for (let at = 0; at < next; at += 128 * KiB) {
      const plan = d.observe(at, 128 * KiB);
      if (plan) expect(plan.end).toBeLessThanOrEqual(next);
    }
  });

  it('plans nothing past the end of the object', () => {
    const d = new SequentialDetector(options, 300 * KiB);
    const plans = [0, 1, 2, 3, 4].map((i) => d.observe(i * 50 * KiB, 50 * KiB));
    for (const p of plans) if (p) expect(p.end).toBeLessThanOrEqual(300 * KiB);
  });
});

describe('readahead through the cache', () => {
  let dir: string;
  let path: string;
  let data: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'readahead-test-'));
    path = join(dir, 'object.bin');
    data = randomBytes(72 * MiB);
    await writeFile(path, data);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const same = (bytes: Uint8Array, at: number) =>
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(data.subarray(at, at + bytes.length));

  it('a sequential read of 64 MiB issues growing parallel GETs, far fewer than its chunks', async () => {
    const remote = await FileObject.open(path, { latencyMs: 5, bytesPerSecond: 1000 * MiB });
    const source = await openCachedSource(remote, { tailBytes: 64 * KiB });
    remote.resetRequests();
    const start = 4 * MiB;
    const blocks = (64 * MiB) / (128 * KiB);
    for (let i = 0; i < blocks; i++) {
      const at = start + i * 128 * KiB;
      expect(same(await source.read(at, 128 * KiB), at)).toBe(true);
    }
    const gets = remote.requests.filter((r) => r.kind === 'fetch');
    const chunks = (64 * MiB) / (256 * KiB);
    expect(gets.length).toBeLessThan(chunks / 5);
    expect(remote.maxConcurrent).toBeGreaterThanOrEqual(3);
    // Requests grow: the largest late GET is many times the first one.
    expect(Math.max(...gets.map((g) => g.length))).toBeGreaterThanOrEqual(8 * MiB);
    expect(gets[0]!.length).toBeLessThanOrEqual(256 * KiB);
    const stats = source.stats().cache;
    expect(stats.readaheadBytes).toBeGreaterThan(48 * MiB);
    // Prefetched data was used: nearly all of the 64 MiB came from readahead.
    expect(stats.readaheadUsedBytes).toBeGreaterThan(60 * MiB);
    expect(stats.misses).toBeLessThan(10);
    console.log(
      `sequential 64 MiB: ${gets.length} GETs for ${chunks} chunks, max ${remote.maxConcurrent} in parallel, ` +
        `sizes ${gets.map((g) => g.length / KiB).join(',')} KiB; readahead ${stats.readaheadBytes / MiB} MiB, used ${(stats.readaheadUsedBytes / MiB).toFixed(1)} MiB`,
    );
    await source.close();
  });

  it('a small cache caps the window and readahead does not evict what the reader is about to use', async () => {
    const remote = await FileObject.open(path, { latencyMs: 2 });
    const cacheBytes = 8 * MiB;
    const source = await openCachedSource(remote, { cacheBytes, tailBytes: 0 });
    remote.resetRequests();
    for (let at = 0; at < 40 * MiB; at += 128 * KiB) expect(same(await source.read(at, 128 * KiB), at)).toBe(true);
    const gets = remote.requests.filter((r) => r.kind === 'fetch');
    expect(Math.max(...gets.map((g) => g.length))).toBeLessThanOrEqual(cacheBytes / 4);
    const stats = source.stats().cache;
    expect(stats.misses).toBeLessThan(5); // the reader found its chunks: none evicted before use
    expect(stats.readaheadBytes - stats.readaheadUsedBytes).toBeLessThanOrEqual(cacheBytes / 2);
    expect(stats.peakDataBytes).toBeLessThanOrEqual(cacheBytes);
    await source.close();
  });

  it('4 parallel sequential readers through a 16 MiB cache fetch each byte once: readahead is not evicted before use', async () => {
    const remote = await FileObject.open(path, { latencyMs: 10 });
    const cacheBytes = 16 * MiB;
    const source = await openCachedSource(remote, { cacheBytes, tailBytes: 0 });
    remote.resetRequests();
    const fileBytes = 16 * MiB;
    const reader = async (base: number) => {
      for (let at = base; at < base + fileBytes; at += 128 * KiB) {
        expect(same(await source.read(at, 128 * KiB), at)).toBe(true);
        await new Promise((resolve) => setTimeout(resolve, 2)); // readers slower than the network, like decompression
      }
    };
    await Promise.all([0, 1, 2, 3].map((i) => reader(i * fileBytes)));
    const stats = source.stats().cache;
    const fetched = remote.requests.filter((r) => r.kind === 'fetch').reduce((sum, r) => sum + r.length, 0);
    console.log(
      `4 streams x 16 MiB, 16 MiB cache: fetched ${(fetched / MiB).toFixed(1)} MiB in ${remote.requests.length} GETs, ` +
        `readahead ${(stats.readaheadBytes / MiB).toFixed(1)} MiB, evicted unused ${(stats.readaheadEvictedUnusedBytes / MiB).toFixed(1)} MiB`,
    );
    expect(fetched).toBeLessThanOrEqual(4 * fileBytes + cacheBytes / 4); // each byte once, plus one window past the last file
    expect(stats.readaheadEvictedUnusedBytes).toBeLessThanOrEqual(2 * MiB);
    expect(stats.readaheadUsedBytes).toBeGreaterThan(3 * fileBytes);
    expect(stats.peakDataBytes).toBeLessThanOrEqual(cacheBytes);
    await source.close();
  });

  it('a reader needing the middle of a queued readahead GET fetches from its chunk on, at once', async () => {
    const remote = await FileObject.open(path, { latencyMs: 30 });
    const source = await openCachedSource(remote, {
      tailBytes: 0,
      chunkBytes: 256 * KiB, // the plan below is written in 256 KiB chunks
      initialReadaheadBytes: 4 * MiB,
      maxReadaheadRequestBytes: 1 * MiB,
      maxReadaheadFetches: 1,
    });
    remote.resetRequests();
    for (let at = 0; at < 192 * KiB; at += 64 * KiB) await source.read(at, 64 * KiB); // 3rd read plans chunks 1..16
    expect(source.stats().cache.queuedFetches).toBe(3); // [1-4] running; [5-8], [9-12], [13-16] queued
    const at = 14 * 256 * KiB + 100;
    expect(same(await source.read(at, 4096), at)).toBe(true);
    const gets = remote.requests
      .filter((r) => r.kind === 'fetch')
      .map((r) => [r.offset / (256 * KiB), r.length / (256 * KiB)]);
    expect(gets.slice(0, 2)).toEqual([
      // chunk 0 came with the open (head)
      [1, 4], // readahead, running
      [14, 3], // the promoted chunk and what follows of its GET (up to 1 MiB), ahead of the queued readahead
    ]);
    await source.close();
  });

  it('prefetch fetches listed ranges in parallel GETs; reads of them then cost nothing', async () => {
    const remote = await FileObject.open(path, { latencyMs: 10 });
    const source = await openCachedSource(remote, { tailBytes: 0, maxReadaheadRequestBytes: 1 * MiB });
    remote.resetRequests();
    const ranges: Array<[number, number]> = [
      [10 * MiB + 5, 3 * MiB],
      [40 * MiB, 100 * KiB],
      [41 * MiB, 100 * KiB],
    ];
    const ok = await Promise.all(ranges.map(([o, l]) => source.prefetch(o, l)));
    expect(ok).toEqual([true, true, true]);
    const gets = remote.requests.filter((r) => r.kind === 'fetch');
    // 13 chunks in GETs of 512 KiB (a range goes in up to 8 parallel GETs, none under 2 miss units), then one chunk each
    expect(gets.length).toBe(7 + 1 + 1);
    expect(remote.maxConcurrent).toBeGreaterThan(2);
    remote.resetRequests();
    for (const [o, l] of ranges) expect(same(await source.read(o, l), o)).toBe(true);
    expect(remote.requests).toHaveLength(0);
    await source.close();
  });

  it('readahead never starves a foreground read', async () => {
    // Slow, large readahead GETs; two connection slots beyond readahead's budget (the sequential reader
    // may hold one).
    const remote = await FileObject.open(path, { latencyMs: 20, bytesPerSecond: 100 * MiB });
    const source = await openCachedSource(remote, {
      tailBytes: 0,
      maxConcurrentFetches: 6,
      maxReadaheadFetches: 4,
      maxReadaheadRequestBytes: 2 * MiB, // windows of 16 MiB and more leave GETs queued
    });
    const sequential = (async () => {
      for (let at = 0; at < 48 * MiB; at += 128 * KiB) await source.read(at, 128 * KiB);
    })();
    const latencies: number[] = [];
    let queuedAtCall = 0;
    for (let i = 0; i < 5; i++) {
      // Wait until readahead GETs are queued: a foreground read must overtake them.
      const deadline = Date.now() + 5000;
      while (source.stats().cache.queuedFetches === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 2));
      const at = 60 * MiB + i * MiB + 12345;
      const before = remote.requests.length;
      queuedAtCall = Math.max(queuedAtCall, source.stats().cache.queuedFetches);
      const t0 = performance.now();
      expect(same(await source.read(at, 4096), at)).toBe(true);
      latencies.push(performance.now() - t0);
      // Its GET went out ahead of the readahead GETs queued before it (at most one raced in).
      const index = remote.requests.findIndex((r, k) => k >= before && r.offset === at - (at % (256 * KiB)));
      expect(index - before).toBeLessThanOrEqual(1);
    }
    await sequential;
    expect(queuedAtCall).toBeGreaterThan(0); // there was readahead waiting to be starved behind
    // One round trip (20 ms) plus transfer; generous for a loaded machine, far below queued 8 MiB GETs.
    expect(Math.max(...latencies)).toBeLessThan(250);
    await source.close();
  });
});

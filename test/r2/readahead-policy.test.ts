import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../../src/r2/cache-options.js';
import { type ReadaheadPolicy, type ReadaheadRequest, SequentialReadahead } from '../../src/r2/readahead-policy.js';
import { ReadaheadRunner } from '../../src/r2/readahead-runner.js';
import { CHUNK, fetchedChunks, KiB, layers, MiB, type ObjectFile, objectFile } from './layer-helpers.js';

/** The default policy alone (it only answers), and the runner that carries out any policy's answers. */

describe('SequentialReadahead', () => {
  it('asks for nothing for random reads and for a growing window, in parallel pieces, for a stream', () => {
    const opts = resolveOptions({ cacheBytes: 256 * MiB });
    const policy = new SequentialReadahead(opts, 1 << 30, 128 * MiB);
    expect(policy.observe(500 * MiB, 4096, Infinity)).toEqual([]);
    expect(policy.observe(10 * MiB, 4096, Infinity)).toEqual([]);
    const asked: ReadaheadRequest[] = [];
    for (let at = 0; at < 64 * MiB; at += 128 * KiB) asked.push(...policy.observe(at, 128 * KiB, Infinity));
    expect(asked.length).toBeGreaterThan(3);
    const [first, second] = asked;
    expect(first!.end - first!.start).toBe(4 * MiB);
    expect(first!.pieceBytes).toBe(512 * KiB); // a 4 MiB window over 8 GETs, one per connection
    expect(second!.streamId).toBe(first!.streamId);
    expect(policy.isAlive(first!.streamId)).toBe(true);
    expect(policy.positionOf(first!.streamId)).toBe(64 * MiB);
    expect(Math.max(...asked.map((r) => r.pieceBytes))).toBe(opts.maxReadaheadRequestBytes);
  });

  it('grows the window 4x a step: 4 -> 16 -> 64 MiB within the first 12 MiB read', () => {
    const opts = resolveOptions({ cacheBytes: 256 * MiB });
    const policy = new SequentialReadahead(opts, 1 << 30, 128 * MiB);
    let aheadUntil = 0;
    const aheadAt: number[] = [];
    for (let at = 0; at < 12 * MiB; at += 128 * KiB) {
      for (const r of policy.observe(at, 128 * KiB, Infinity)) aheadUntil = Math.max(aheadUntil, r.end);
      aheadAt.push(aheadUntil - (at + 128 * KiB));
    }
    expect(Math.max(...aheadAt.slice(0, 16))).toBeLessThanOrEqual(4 * MiB);
    expect(Math.max(...aheadAt.slice(16, 64))).toBeGreaterThan(8 * MiB);
    expect(Math.max(...aheadAt.slice(16, 64))).toBeLessThanOrEqual(16 * MiB);
    expect(aheadAt.at(-1)).toBeGreaterThan(32 * MiB);
  });

  it('keeps a full window nearly all in flight: topped up one GET at a time, never half a window at once', () => {
    const opts = resolveOptions({ cacheBytes: 256 * MiB });
    const policy = new SequentialReadahead(opts, 1 << 30, 128 * MiB);
    let aheadUntil = 0;
    let leastAheadAtFullWindow = Infinity;
    const steps: number[] = [];
    for (let at = 0; at < 512 * MiB; at += 128 * KiB) {
      for (const r of policy.observe(at, 128 * KiB, Infinity)) {
        aheadUntil = Math.max(aheadUntil, r.end);
        if (at > 128 * MiB) steps.push(r.end - r.start);
      }
      if (at > 128 * MiB) leastAheadAtFullWindow = Math.min(leastAheadAtFullWindow, aheadUntil - (at + 128 * KiB));
    }
    // 64 MiB window (a quarter of the cache), in 8 MiB GETs: a top-up is one GET's worth...
    expect(new Set(steps)).toEqual(new Set([8 * MiB]));
    // ... so the reader always has at least 56 MiB fetched or on the way ahead of it.
    expect(leastAheadAtFullWindow).toBeGreaterThanOrEqual(56 * MiB - 128 * KiB);
  });

  it('never plans more than the room it is given, nor a window over a quarter of the cache', () => {
    const opts = resolveOptions({ cacheBytes: 8 * MiB });
    const policy = new SequentialReadahead(opts, 1 << 30, 4 * MiB);
    for (let at = 0; at < 32 * MiB; at += 128 * KiB) {
      for (const r of policy.observe(at, 128 * KiB, 1 * MiB)) expect(r.end - r.start).toBeLessThanOrEqual(1 * MiB);
    }
    const big = new SequentialReadahead(opts, 1 << 30, 4 * MiB);
    let widest = 0;
    for (let at = 0; at < 64 * MiB; at += 128 * KiB)
      for (const r of big.observe(at, 128 * KiB, Infinity)) widest = Math.max(widest, r.end - r.start);
    expect(widest).toBeLessThanOrEqual(2 * MiB);
  });
});

describe('ReadaheadRunner with a plugged-in policy', () => {
  let file: ObjectFile;

  beforeAll(async () => {
    file = await objectFile();
  });

  afterAll(async () => {
    await file.remove();
  });

  /** A policy that asks for what a test scripts, and records the room it was given. */
  function scripted(answers: ReadaheadRequest[][]) {
    const rooms: number[] = [];
    const alive = new Set<number>([1]);
    const policy: ReadaheadPolicy = {
      observe: (_offset, _length, room) => {
        rooms.push(room);
        return answers.shift() ?? [];
      },
      isAlive: (id) => alive.has(id),
      positionOf: (id) => (alive.has(id) ? 0 : undefined),
    };
    return { policy, rooms, alive };
  }

  it('fetches what the policy asks for that is neither held, in flight nor pinned, in its piece size', async () => {
    const l = await layers(file, { cacheBytes: 4 * MiB });
    l.alive.add(1);
    l.pinned.seedTail(file.data.subarray(file.data.length - 3 * CHUNK)); // the last chunks are pinned
    await l.fetcher.request([12], 'foreground')[0]![1]; // held
    const last = l.layout.count - 1;
    const { policy, rooms } = scripted([
      [
        { streamId: 1, start: 10 * CHUNK, end: 16 * CHUNK, pieceBytes: 2 * CHUNK },
        { streamId: 1, start: (last - 1) * CHUNK, end: file.data.length, pieceBytes: MiB },
      ],
    ]);
    const runner = new ReadaheadRunner(l.layout, l.store, l.fetcher, l.pinned, policy, 2 * MiB);
    l.remote.resetRequests();
    runner.afterRead(9 * CHUNK, 100);
    expect(rooms).toEqual([2 * MiB]);
    expect(l.fetcher.aheadInFlightBytes).toBe(5 * CHUNK);
    expect(runner.room()).toBe(2 * MiB - 5 * CHUNK);
    await new Promise((r) => setTimeout(r, 50));
    expect(fetchedChunks(l.remote).sort((a, b) => a[0] - b[0])).toEqual([
      [10, 2],
      [13, 2],
      [15, 1],
    ]);
    expect(l.store.aheadBytes).toBe(5 * CHUNK); // held apart from the LRU until read
    await l.close();
  });

  it("when the budget is spent, a gone stream's unused readahead stops counting", async () => {
    const l = await layers(file, { cacheBytes: 4 * MiB });
    l.alive.add(1);
    const { policy, rooms, alive } = scripted([[{ streamId: 1, start: 0, end: 4 * CHUNK, pieceBytes: MiB }]]);
    const runner = new ReadaheadRunner(l.layout, l.store, l.fetcher, l.pinned, policy, 4 * CHUNK);
    runner.afterRead(0, 100);
    await Promise.all([0, 1, 2, 3].map((c) => l.fetcher.pending(c)));
    expect(runner.room()).toBe(0); // stream 1 is alive and has read none of it
    alive.delete(1);
    runner.afterRead(5 * MiB, 100);
    expect(rooms[1]).toBe(4 * CHUNK);
    expect(l.store.aheadBytes).toBe(0);
    expect([0, 1, 2, 3].every((c) => l.store.has(c))).toBe(true); // demoted to the LRU, still readable
    await l.close();
  });
});

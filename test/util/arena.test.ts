import { describe, expect, it } from 'vitest';
import { Lease, Arena } from '../../src/util/arena.js';
import { ChunkLru } from '../../src/r2/chunk-lru.js';

const CHUNK = 1024;

describe('Arena', () => {
  it('reuses a given-back buffer, and the old handle turns invalid before the buffer is written again', () => {
    const arena = new Arena(CHUNK, 4);
    const a = arena.take(CHUNK);
    a.bytes.fill(1);
    expect(a.valid).toBe(true);
    arena.give(a);
    expect(a.valid).toBe(false);
    const b = arena.take(100);
    expect(b.bytes.buffer).toBe(a.bytes.buffer); // the same memory, now another chunk's
    expect(b.bytes.length).toBe(100);
    expect(a.valid).toBe(false);
    expect(b.valid).toBe(true);
    expect(arena.allocated).toBe(1);
    expect(arena.reused).toBe(1);
  });

  it('ignores a second give of the same handle and owned chunks', () => {
    const arena = new Arena(CHUNK, 4);
    const a = arena.take(CHUNK);
    arena.give(a);
    arena.give(a); // stale: must not put the slot on the free list twice
    expect(arena.freeSlots).toBe(1);
    const b = arena.take(CHUNK);
    const c = arena.take(CHUNK);
    expect(c.bytes.buffer).not.toBe(b.bytes.buffer);
    arena.give(new Lease(new Uint8Array(CHUNK)));
    expect(arena.freeSlots).toBe(0);
    expect(new Lease(new Uint8Array(1)).valid).toBe(true);
  });

  it('keeps at most maxFreeSlots and refuses chunks larger than a slot', () => {
    const arena = new Arena(CHUNK, 2);
    const chunks = [arena.take(CHUNK), arena.take(CHUNK), arena.take(CHUNK)];
    for (const c of chunks) arena.give(c);
    expect(arena.freeSlots).toBe(2);
    expect(() => arena.take(CHUNK + 1)).toThrow(RangeError);
  });
});

describe('ChunkLru with an arena', () => {
  function setup(capacityChunks: number) {
    const arena = new Arena(CHUNK, capacityChunks);
    const released: Lease[] = [];
    const lru = new ChunkLru(capacityChunks * CHUNK, (c) => {
      released.push(c);
      arena.give(c);
    });
    return { arena, lru, released };
  }

  it('gives back evicted chunks, and only them', () => {
    const { arena, lru, released } = setup(2);
    const c0 = arena.take(CHUNK);
    const c1 = arena.take(CHUNK);
    const c2 = arena.take(CHUNK);
    lru.set(0, c0, false);
    lru.set(1, c1, false);
    lru.get(0); // 1 is now the least recently used
    lru.set(2, c2, false); // over capacity: 1 goes
    expect(released).toEqual([c1]);
    expect(c1.valid).toBe(false);
    expect(lru.get(0)).toBe(c0);
    expect(c0.valid && c2.valid).toBe(true);
    expect(lru.makeRoom(CHUNK, 0)).toBe(true);
    expect(released).toHaveLength(2);
    expect(lru.heldBytes).toBe(CHUNK);
  });

  it('moving a chunk from the readahead tier to the LRU keeps it; replacing or clearing releases', () => {
    const { arena, lru, released } = setup(4);
    const a = arena.take(CHUNK);
    const b = arena.take(CHUNK);
    lru.set(5, a, true, 1); // unused readahead of stream 1
    expect(lru.aheadBytes).toBe(CHUNK);
    expect(lru.get(5)).toBe(a); // read: into the behind tier
    lru.set(6, b, true, 1);
    lru.demote(() => true);
    expect(released).toEqual([]);
    lru.set(5, a, false); // the same chunk again: still held
    expect(released).toEqual([]);
    const a2 = arena.take(CHUNK);
    lru.set(5, a2, false); // a new chunk for the same index: the old one goes
    expect(released).toEqual([a]);
    const c = arena.take(CHUNK);
    lru.set(7, c, true, 2);
    lru.clear();
    expect(new Set(released)).toEqual(new Set([a, a2, b, c]));
    expect([a2, b, c].every((x) => !x.valid)).toBe(true);
  });

  it('gives back readahead pushed out by a foreground makeRoom', () => {
    const { arena, lru, released } = setup(2);
    const a = arena.take(CHUNK);
    const b = arena.take(CHUNK);
    lru.set(1, a, true, 1);
    lru.set(2, b, true, 1);
    expect(lru.makeRoom(CHUNK, 0, false)).toBe(false); // readahead never evicts readahead
    expect(released).toEqual([]);
    expect(lru.makeRoom(CHUNK, 0, true)).toBe(true);
    expect(released).toEqual([a]);
  });

  it('drop-behind: a stream of any length turns over a few buffers and leaves the LRU alone', () => {
    const capacity = 32;
    const { arena, lru, released } = setup(capacity);
    const keep = arena.take(CHUNK);
    lru.set(1000, keep, false); // read without readahead: an LRU chunk
    for (let c = 0; c < 100; c++) {
      lru.set(c, arena.take(CHUNK), true, 1); // stream 1's readahead
      expect(lru.get(c)!.valid).toBe(true); // read: the chunk handed out is never the one dropped
      expect(lru.get(c)).toBe(lru.get(c)); // the stream's later reads of it: still there, not promoted
      expect(lru.behindBytes).toBeLessThanOrEqual(lru.behindCapBytes);
    }
    const kept = lru.behindCapBytes / CHUNK;
    expect(lru.droppedBehind).toBe(100 - kept);
    expect(released).toHaveLength(100 - kept);
    // Slots of dropped chunks were taken again: memory never grew past the cap (+ the LRU chunk).
    expect(arena.allocated).toBeLessThanOrEqual(kept + 2);
    expect(lru.has(99) && lru.has(100 - kept)).toBe(true);
    expect(lru.has(100 - kept - 1)).toBe(false);
    expect(lru.get(1000)).toBe(keep);
    expect(lru.heldBytes).toBe((kept + 1) * CHUNK);
  });

  it('when room is needed, used readahead goes before the LRU', () => {
    const { arena, lru, released } = setup(4);
    const old = arena.take(CHUNK);
    lru.set(0, old, false);
    const used = arena.take(CHUNK);
    lru.set(1, used, true, 1);
    lru.get(1); // into the behind tier
    lru.set(2, arena.take(CHUNK), false);
    lru.set(3, arena.take(CHUNK), false);
    expect(lru.makeRoom(CHUNK, 0)).toBe(true);
    expect(released).toEqual([used]); // not chunk 0, the least recently used of the LRU
    expect(lru.get(0)).toBe(old);
  });
});

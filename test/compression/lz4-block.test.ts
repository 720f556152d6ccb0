import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeLz4Block, Lz4BlockError } from '../../src/squashfs/compression/lz4-block.js';
import { ensureFixtures, type Fixture } from '../helpers/fixtures.js';
import { dataBlocks, firstInodeBlock } from './blocks.js';

// Runs in its own worker: lz4-napi loaded here is the oracle, not the decoder under test.
const require = createRequire(import.meta.url);
const lz4 = require('lz4-napi') as { compressSync(b: Buffer): Buffer; uncompressSync(b: Buffer): Buffer };

/** lz4-napi's answer for a raw block with this output bound: the bytes, or undefined if it refuses. */
function oracle(block: Uint8Array, bound: number): Buffer | undefined {
  const prefixed = Buffer.alloc(4 + block.length);
  prefixed.writeUInt32LE(bound, 0);
  prefixed.set(block, 4);
  try {
    const out = lz4.uncompressSync(prefixed);
    return out.length <= bound ? out : undefined;
  } catch {
    return undefined;
  }
}

/** Ours: the bytes, or undefined after an Lz4BlockError (any other throw fails the test). */
function ours(block: Uint8Array, bound: number): Buffer | undefined {
  const out = Buffer.alloc(bound);
  try {
    return out.subarray(0, decodeLz4Block(block, out));
  } catch (e) {
    if (!(e instanceof Lz4BlockError)) throw e;
    return undefined;
  }
}

describe('decodeLz4Block', () => {
  let fixtures: Map<string, Fixture>;
  beforeAll(async () => {
    fixtures = new Map((await ensureFixtures()).map((f) => [f.name, f]));
  });

  it.each(['lz4', 'lz4-hc', 'lz4-4k'])('decodes the real blocks of %s to the source bytes', async (name) => {
    const fixture = fixtures.get(name)!;
    let seen = 0;
    for (const path of ['/sizes/mixed-2M', '/sizes/text-131073', '/dup-a']) {
      for (const block of await dataBlocks(fixture.path, fixture.sourceTree, path)) {
        if (!block.compressed) continue;
        seen++;
        expect(ours(block.stored, 1 << 20)?.equals(block.expected), `${path} block ${block.index}`).toBe(true);
      }
    }
    expect(seen).toBeGreaterThanOrEqual(2);
    const meta = await firstInodeBlock(fixture.path);
    expect(ours(meta.payload, 8192)?.equals(oracle(meta.payload, 8192)!)).toBe(true);
  });

  it('agrees with lz4-napi on valid, cut, flipped and random blocks: same bytes, or both refuse', () => {
    let seed = 20261207;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const sources = Array.from({ length: 24 }, (_, i) => {
      const b = Buffer.alloc(1 + rnd(150_000));
      for (let j = 0; j < b.length; j++) {
        b[j] = [rnd(256), (j % 7) * 3, rnd(10) < 8 ? 65 + rnd(4) : rnd(256), 0][i % 4]!;
      }
      return b;
    });
    const tally = { same: 0, refused: 0 };
    for (let round = 0; round < 4000; round++) {
      const src = sources[round % sources.length]!;
      let block = Buffer.from(lz4.compressSync(src).subarray(4)); // lz4-napi's own size prefix off: squashfs stores raw blocks
      const mutation = rnd(4);
      if (mutation === 0) block = block.subarray(0, rnd(block.length + 1));
      else if (mutation === 1) for (let k = 0; k <= rnd(4); k++) block[rnd(block.length)] = rnd(256);
      else if (mutation === 2) block = randomBytes(1 + rnd(300));
      const bound = rnd(3) === 0 ? 1 + rnd(src.length) : Math.max(src.length, 8192);
      const mine = ours(block, bound);
      const theirs = oracle(block, bound);
      expect(mine === undefined, `round ${round}: refused by one decoder only`).toBe(theirs === undefined);
      if (mine && theirs) {
        expect(mine.equals(theirs), `round ${round}`).toBe(true);
        if (mutation === 3 && bound >= src.length) expect(mine.equals(src)).toBe(true);
        tally.same++;
      } else tally.refused++;
    }
    expect(tally.same).toBeGreaterThan(500);
    expect(tally.refused).toBeGreaterThan(500);
  });

  it('refuses with a reason: bound exceeded, offset before the start, offset 0, cut inside a sequence', () => {
    const reason = (block: number[], bound = 64) => {
      try {
        decodeLz4Block(Uint8Array.from(block), new Uint8Array(bound));
        return 'decoded';
      } catch (e) {
        return (e as Error).message;
      }
    };
    // 1 literal "a", then a 4-byte match at offset 1, then the closing literal: "aaaaa" + "b".
    expect(reason([0x10, 0x61, 0x01, 0x00, 0x10, 0x62])).toBe('decoded');
    expect(reason([0x10, 0x61, 0x01, 0x00, 0x10, 0x62], 5)).toMatch(/more than 5 bytes/);
    expect(reason([0x10, 0x61, 0x02, 0x00, 0x10, 0x62])).toMatch(/offset 2 before the start/);
    expect(reason([0x10, 0x61, 0x00, 0x00, 0x10, 0x62])).toMatch(/offset 0/);
    expect(reason([0x10, 0x61, 0x01])).toMatch(/inside a match offset/);
    expect(reason([0x10, 0x61, 0x01, 0x00])).toMatch(/ends inside a sequence/);
    expect(reason([0xf0, 0xff])).toMatch(/inside a literal length/);
    expect(reason([0x50, 0x61])).toMatch(/literals run past the end/);
    expect(reason([])).toMatch(/empty/);
  });
});

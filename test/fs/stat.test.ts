// getattr's reply as the FUSE addon reads it: 18 u32 words (fuse-native.c: populate_stat).
import { describe, expect, test } from 'vitest';
import { encodeFuseStat, fuseStatOf, toFuseStat } from '../../src/fs/stat.js';
import type { Stat } from '../../src/squashfs/types.js';

const u64 = (ints: Uint32Array, at: number): number => ints[at]! + ints[at + 1]! * 0x1_0000_0000;

const big: Stat = Object.freeze({
  ino: 70_000,
  type: 'file',
  mode: 0o100644,
  uid: 1000,
  gid: 100,
  size: 5 * 2 ** 30 + 17,
  nlink: 2,
  mtime: 1_700_000_000,
  rdev: 0,
  blocks: 10_485_761,
  blksize: 131_072,
});

describe('encoded stat', () => {
  test('every field in its word; sizes, blocks and times above 4 GiB split into low and high words', () => {
    const ints = encodeFuseStat(toFuseStat(big));
    expect(ints.length).toBe(18);
    expect([ints[0], ints[1], ints[2]]).toEqual([0o100644, 1000, 100]);
    expect(u64(ints, 3)).toBe(big.size);
    expect(ints[4]).toBe(1);
    expect([ints[5], ints[6], ints[7], ints[8], ints[9]]).toEqual([0, 2, 70_000, 0, 131_072]);
    expect(u64(ints, 10)).toBe(big.blocks);
    for (const at of [12, 14, 16]) expect(u64(ints, at)).toBe(big.mtime * 1000);
  });

  test('nlink 0 goes out as 1, as fuse-native reports it', () => {
    expect(encodeFuseStat(toFuseStat({ ...big, nlink: 0 }))[6]).toBe(1);
  });

  test('is encoded once per stat', () => {
    expect(fuseStatOf(big)).toBe(fuseStatOf(big));
    expect(Array.from(fuseStatOf(big))).toEqual(Array.from(encodeFuseStat(toFuseStat(big))));
  });
});

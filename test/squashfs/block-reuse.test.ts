/**
 * Decoded data blocks live in reused buffers (src/util/arena.ts): a block evicted while a read still
 * has to copy it must be decoded again, never copied from a buffer that now holds another block.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SquashfsImage } from '../../src/squashfs/index.js';
import { FileSource } from '../../src/r2/file.js';
import { wordText } from '../helpers/bytes.js';

const MiB = 1 << 20;
let work: string;
let image: string;
const files = new Map<string, Buffer>();

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'block-reuse-'));
  const tree = join(work, 'tree');
  mkdirSync(tree);
  files.set('big.txt', wordText(6 * MiB + 777)); // 48 blocks and a fragment tail
  files.set('other.txt', wordText(3 * MiB));
  for (let i = 0; i < 20; i++) files.set(`small${i}.txt`, wordText(5000 + i * 100)); // share fragment blocks
  for (const [name, bytes] of files) writeFileSync(join(tree, name), bytes);
  image = join(work, 'img.sqsh');
  execFileSync('mksquashfs', [tree, image, '-noappend', '-quiet', '-no-progress', '-comp', 'gzip', '-b', '128K']);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function open() {
  // The smallest cache: 768 KiB of decoded blocks (6 blocks), far less than one large read.
  return SquashfsImage.open(await FileSource.open(image), { cacheBytes: 1 * MiB, readaheadBytes: 0 });
}

describe('decoded blocks in reused buffers', () => {
  it('a read larger than the block cache decodes its evicted blocks again and returns the right bytes', async () => {
    const img = await open();
    const big = files.get('big.txt')!;
    const got = await img.read('/big.txt', 0, big.length);
    expect(Buffer.from(got).equals(big)).toBe(true);
    // Blocks 0.. were evicted (their buffers given back and taken by later blocks) before the copy.
    expect(img.cacheStats().dataRedecoded).toBeGreaterThan(0);
    await img.close();
  });

  it('concurrent reads of different files and fragment tails through a tiny cache all return the right bytes', async () => {
    const img = await open();
    const jobs: Array<Promise<void>> = [];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const names = [...files.keys()];
    for (let i = 0; i < 300; i++) {
      const name = names[rand(names.length)]!;
      const bytes = files.get(name)!;
      const offset = rand(bytes.length);
      const length = Math.min(bytes.length - offset, 1 + rand(2 * MiB));
      jobs.push(
        img.read(`/${name}`, offset, length).then((got) => {
          expect(
            Buffer.from(got).equals(bytes.subarray(offset, offset + length)),
            `${name} [${offset}, +${length})`,
          ).toBe(true);
        }),
      );
    }
    await Promise.all(jobs);
    await img.close();
  });

  it('readIntoNow copies a tail from a cached fragment block at once, and never from an evicted one', async () => {
    const img = await open();
    const names = [...files.keys()];
    const inodes = new Map(await Promise.all(names.map(async (n) => [n, await img.lookup(`/${n}`)] as const)));
    const tryAll = (): number => {
      let served = 0;
      for (const name of names) {
        const bytes = files.get(name)!;
        const tail = bytes.length - (bytes.length % (128 << 10));
        for (const offset of [0, 1, tail, tail + 3, bytes.length - 1, bytes.length, bytes.length + 9]) {
          const target = Buffer.alloc(4000, 0xee);
          const n = img.readIntoNow(inodes.get(name)!, offset, target);
          if (n === undefined) continue;
          if (n > 0) served++; // n = 0 at and past the end needs no block
          const want = bytes.subarray(offset, offset + 4000);
          expect(n, `${name} @${offset}`).toBe(want.length);
          expect(target.subarray(0, n).equals(want), `${name} @${offset}`).toBe(true);
        }
      }
      return served;
    };
    expect(tryAll()).toBe(0); // no block decoded yet
    await img.read('/small0.txt', 0, 10);
    expect(tryAll()).toBeGreaterThan(0);
    // big.txt and other.txt through a 1 MiB cache: every fragment block is evicted, its buffer reused.
    await img.read('/big.txt', 0, 6 * MiB);
    await img.read('/other.txt', 0, 3 * MiB);
    tryAll(); // whatever it serves is right
    for (const name of names) await img.read(`/${name}`, 0, files.get(name)!.length);
    expect(tryAll()).toBeGreaterThan(0);
    await img.close();
  });

  it('whole-image read through the arena matches unsquashfs byte for byte', async () => {
    const img = await open();
    const out = join(work, 'x');
    execFileSync('unsquashfs', ['-q', '-n', '-d', out, image]);
    for (const name of files.keys()) {
      const got = await img.read(`/${name}`, 0, files.get(name)!.length);
      expect(Buffer.from(got).equals(readFileSync(join(out, name))), name).toBe(true);
    }
    await img.close();
  });
});

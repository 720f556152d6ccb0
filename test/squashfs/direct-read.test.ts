/**
 * Uncompressed data blocks from a source with readInto (a local file, the chunk cache) are copied
 * straight from the source, and a slice of a block is asked for as `exact` (a random read of a big
 * file must not bring the neighbours a small-file read would).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FileSource } from '../../src/r2/file.js';
import { type ReadOptions, SquashfsImage } from '../../src/squashfs/index.js';

const KiB = 1024;
let work: string;
let image: string;
const big = randomBytes(1024 * KiB + 5000); // incompressible: stored blocks

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'direct-read-'));
  mkdirSync(join(work, 'tree'));
  writeFileSync(join(work, 'tree', 'big.bin'), big);
  image = join(work, 'img.sqsh');
  execFileSync('mksquashfs', [
    join(work, 'tree'),
    image,
    '-noappend',
    '-quiet',
    '-no-progress',
    '-b',
    '128K',
    '-no-fragments',
  ]);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

it('a slice of a stored block is read exactly, a whole block plainly, and the bytes are right', async () => {
  const file = await FileSource.open(image);
  const calls: Array<{ length: number; exact: boolean }> = [];
  const source = {
    name: file.name,
    size: file.size,
    read: (offset: number, length: number) => file.read(offset, length),
    readInto: (offset: number, target: Uint8Array, options?: ReadOptions) => {
      calls.push({ length: target.length, exact: options?.exact === true });
      return file.readInto(offset, target);
    },
    close: () => file.close(),
  };
  const img = await SquashfsImage.open(source, { readaheadBytes: 0 });

  calls.length = 0;
  const slice = await img.read('/big.bin', 300 * KiB + 17, 4096);
  expect(Buffer.from(slice).equals(big.subarray(300 * KiB + 17, 300 * KiB + 17 + 4096))).toBe(true);
  expect(calls).toEqual([{ length: 4096, exact: true }]);

  calls.length = 0;
  const whole = await img.read('/big.bin', 256 * KiB, 256 * KiB); // blocks 2 and 3, entire
  expect(Buffer.from(whole).equals(big.subarray(256 * KiB, 512 * KiB))).toBe(true);
  expect(calls).toEqual([
    { length: 128 * KiB, exact: false },
    { length: 128 * KiB, exact: false },
  ]);

  calls.length = 0;
  const tail = await img.read('/big.bin', 1024 * KiB, 5000); // the whole short last block
  expect(Buffer.from(tail).equals(big.subarray(1024 * KiB))).toBe(true);
  expect(calls).toEqual([{ length: 5000, exact: false }]);
  await img.close();
});

/**
 * Targeted damage to single inodes of real images built with uncompressed inodes (-noI), located
 * through the reader itself: wrong file sizes and fragment offsets must fail the read with a clear
 * ECORRUPT, never return wrong bytes. Also checks the metadata-span hint given to sources.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { SquashfsImage, type ByteSource } from '../../src/squashfs/index.js';
import type { SquashfsInode } from '../../src/squashfs/inode.js';

function memorySource(bytes: Uint8Array): ByteSource & { retained: [number, number][] } {
  const retained: [number, number][] = [];
  return {
    name: 'memory',
    size: bytes.length,
    retained,
    async read(offset, length) {
      return bytes.slice(offset, offset + length);
    },
    async retain(offset, length) {
      retained.push([offset, length]);
    },
  };
}

let dir: string;
const images: Record<string, Buffer> = {};
const BIG = Buffer.alloc(300_000);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 7) % 251;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sqfs-patch-'));
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'big'), BIG);
  writeFileSync(join(tree, 'small'), 'tail in a fragment\n');
  for (const [name, opts] of [
    ['nofrag', ['-no-fragments']],
    ['frag', []],
  ] as const) {
    const img = join(dir, `${name}.sqsh`);
    execFileSync('mksquashfs', [tree, img, '-noappend', '-quiet', '-no-progress', '-noI', '-b', '4K', '-processors', '1', ...opts]);
    images[name] = readFileSync(img);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Absolute offset of an inode's first byte in an image whose inode blocks are stored uncompressed. */
async function inodeOffset(bytes: Buffer, path: string): Promise<number> {
  const image = await SquashfsImage.open(memorySource(bytes));
  const inode = (await image.lookup(path)) as SquashfsInode;
  const block = Math.floor(inode.ref / 65536);
  const offset = inode.ref % 65536;
  const abs = image.superblock.inodeTableStart + block;
  expect(bytes.readUInt16LE(abs) & 0x8000).toBe(0x8000); // stored uncompressed
  expect(offset + 32).toBeLessThan(8192); // the fields patched below sit in this block
  return abs + 2 + offset;
}

test('the intact images read back exactly, and the metadata span is retained in one call', async () => {
  for (const bytes of Object.values(images)) {
    const source = memorySource(bytes);
    const image = await SquashfsImage.open(source);
    const sb = image.superblock;
    expect(source.retained).toEqual([[sb.inodeTableStart, sb.bytesUsed - sb.inodeTableStart]]);
    expect(Buffer.compare(Buffer.from(await image.read('/big', 0, 400_000)), BIG)).toBe(0);
    expect(Buffer.from(await image.read('/small', 0, 100)).toString()).toBe('tail in a fragment\n');
  }
});

test('a last block that decodes to a different size than the file size implies is ECORRUPT', async () => {
  const bytes = Buffer.from(images.nofrag!);
  const at = await inodeOffset(bytes, '/big');
  expect(bytes.readUInt16LE(at)).toBe(2); // basic file
  expect(bytes.readUInt32LE(at + 28)).toBe(300_000);
  bytes.writeUInt32LE(299_990, at + 28);
  const image = await SquashfsImage.open(memorySource(bytes));
  await expect(image.read('/big', 299_000, 10)).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/decodes to \d+ bytes, expected \d+/) });
  // Blocks before the last are still fine.
  expect(Buffer.compare(Buffer.from(await image.read('/big', 0, 4096)), BIG.subarray(0, 4096))).toBe(0);
});

test('a file size claiming more blocks than the list holds is ECORRUPT, not a huge allocation', async () => {
  const bytes = Buffer.from(images.nofrag!);
  const at = await inodeOffset(bytes, '/big');
  bytes.writeUInt32LE(0xffff_fff0, at + 28); // ~4 GiB: a million block words that are not there
  const image = await SquashfsImage.open(memorySource(bytes));
  const err = await image.read('/big', 0xffff_0000, 10).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'ECORRUPT' });
});

test('a fragment offset beyond the fragment block is ECORRUPT', async () => {
  const bytes = Buffer.from(images.frag!);
  const at = await inodeOffset(bytes, '/small');
  expect(bytes.readUInt32LE(at + 20)).not.toBe(0xffffffff); // has a fragment
  bytes.writeUInt32LE(4000, at + 24);
  const image = await SquashfsImage.open(memorySource(bytes));
  await expect(image.read('/small', 0, 100)).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/tail .* beyond the fragment/) });
});

test('an inode number beyond inode_count and an unknown inode type are ECORRUPT', async () => {
  const a = Buffer.from(images.frag!);
  const atA = await inodeOffset(a, '/small');
  a.writeUInt32LE(1000, atA + 12);
  await expect((await SquashfsImage.open(memorySource(a))).stat('/small')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/inode number 1000 outside/) });
  const b = Buffer.from(images.frag!);
  const atB = await inodeOffset(b, '/small');
  b.writeUInt16LE(15, atB);
  await expect((await SquashfsImage.open(memorySource(b))).stat('/small')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/unknown inode type 15/) });
});

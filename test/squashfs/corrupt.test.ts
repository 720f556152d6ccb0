/**
 * Hand-made bad images: each is refused (or the damaged part fails) with a SquashfsError whose
 * code and message say what is wrong; plus a bounded mutation run (flipped bytes, truncation) where
 * everything either works or fails with a SquashfsError, never another exception or a hang.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SquashfsImage, SquashfsError, type ByteSource } from '../../src/squashfs/index.js';
import type { Inode } from '../../src/squashfs/types.js';

/** An in-memory copy of an image (the bytes under test are real mksquashfs output, then damaged). */
function memorySource(bytes: Uint8Array, name = 'memory'): ByteSource {
  return {
    name,
    size: bytes.length,
    async read(offset, length) {
      if (offset < 0 || offset + length > bytes.length)
        throw new RangeError(`read [${offset}, +${length}) outside ${bytes.length}`);
      return bytes.slice(offset, offset + length);
    },
  };
}

let dir: string;
let pristine: Buffer;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sqfs-corrupt-'));
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'sub', 'deeper'), { recursive: true });
  writeFileSync(join(tree, 'small'), 'hello squashfs\n');
  writeFileSync(join(tree, 'big'), Buffer.alloc(300_000, 'block data 0123456789 '));
  writeFileSync(join(tree, 'sub', 'deeper', 'f'), 'x'.repeat(5000));
  for (let i = 0; i < 400; i++) writeFileSync(join(tree, 'sub', `n${i}`), `${i}`);
  symlinkSync('small', join(tree, 'link'));
  execFileSync('setfattr', ['-n', 'user.k', '-v', 'v'.repeat(300), join(tree, 'small')]);
  execFileSync('mksquashfs', [
    tree,
    join(dir, 'img.sqsh'),
    '-noappend',
    '-quiet',
    '-no-progress',
    '-comp',
    'gzip',
    '-b',
    '4K',
    '-processors',
    '1',
  ]);
  pristine = readFileSync(join(dir, 'img.sqsh'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function patched(edit: (b: Buffer) => void, length?: number): Buffer {
  const b = Buffer.from(pristine.subarray(0, length ?? pristine.length));
  edit(b);
  return b;
}

async function openError(bytes: Uint8Array): Promise<SquashfsError> {
  const e = await SquashfsImage.open(memorySource(bytes)).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SquashfsError);
  return e as SquashfsError;
}

/** Walks everything (cycle-safe), reading every file and xattr; returns what it could not. */
async function walkAll(image: SquashfsImage, deadline: number): Promise<SquashfsError[]> {
  const errors: SquashfsError[] = [];
  const seen = new Set<number>();
  const guard = async <T>(p: Promise<T>): Promise<T | undefined> => {
    try {
      return await p;
    } catch (e) {
      if (!(e instanceof SquashfsError)) throw e;
      errors.push(e);
      return undefined;
    }
  };
  const visit = async (inode: Inode): Promise<void> => {
    if (seen.has(inode.ref) || seen.size > 5000 || Date.now() > deadline) return;
    seen.add(inode.ref);
    await guard(image.listXattrs(inode));
    if (inode.stat.type === 'file') await guard(image.read(inode, 0, 1 << 20));
    if (inode.stat.type === 'symlink') await guard(image.readlink(inode));
    if (inode.stat.type === 'directory') {
      for (const e of (await guard(image.readdir(inode))) ?? []) {
        await guard(image.lookupChild(inode, e.name));
        const child = await guard(image.inode(e.ref));
        if (child) await visit(child);
      }
    }
  };
  const root = await guard(image.root());
  if (root) await visit(root);
  return errors;
}

describe('bad superblocks and tables', () => {
  test('the pristine image works', async () => {
    const image = await SquashfsImage.open(memorySource(pristine));
    expect(await walkAll(image, Date.now() + 10_000)).toEqual([]);
    expect(Buffer.from(await image.read('/small', 0, 100)).toString()).toBe('hello squashfs\n');
  });

  const cases: [string, (b: Buffer) => void, string, RegExp][] = [
    ['bad magic', (b) => b.write('hsqx', 0, 'latin1'), 'ECORRUPT', /bad magic/],
    ['version 5.0', (b) => b.writeUInt16LE(5, 28), 'EUNSUPPORTED', /version 5\.0/],
    ['unknown compressor', (b) => b.writeUInt16LE(9, 20), 'EUNSUPPORTED', /compressor id 9/],
    ['block size not a power of two', (b) => b.writeUInt32LE(5000, 12), 'ECORRUPT', /block size 5000/],
    [
      'block size 2 MiB',
      (b) => {
        b.writeUInt32LE(2 << 20, 12);
        b.writeUInt16LE(21, 22);
      },
      'ECORRUPT',
      /block size/,
    ],
    ['block_log mismatch', (b) => b.writeUInt16LE(13, 22), 'ECORRUPT', /block_log 13 does not match/],
    [
      'bytes_used beyond the image',
      (b) => b.writeBigUInt64LE(BigInt(b.length + 1), 40),
      'ECORRUPT',
      /bytes_used .* beyond the image size/,
    ],
    [
      'inode table beyond bytes_used',
      (b) => b.writeBigUInt64LE(b.readBigUInt64LE(40) + 10n, 64),
      'ECORRUPT',
      /inode table start beyond bytes_used/,
    ],
    [
      'directory table before inode table',
      (b) => b.writeBigUInt64LE(b.readBigUInt64LE(64) - 1n, 72),
      'ECORRUPT',
      /inode table start .* not before directory table/,
    ],
    [
      'id table before directory table',
      (b) => b.writeBigUInt64LE(b.readBigUInt64LE(72) - 1n, 48),
      'ECORRUPT',
      /id table start .* not after/,
    ],
    ['zero inodes', (b) => b.writeUInt32LE(0, 4), 'ECORRUPT', /inode count is 0/],
    ['zero ids', (b) => b.writeUInt16LE(0, 26), 'ECORRUPT', /id count is 0/],
    ['root reference offset beyond 8192', (b) => b.writeBigUInt64LE(9000n, 32), 'ECORRUPT', /root inode reference/],
    [
      'id index entry pointing past its table',
      (b) => b.writeBigUInt64LE(b.readBigUInt64LE(40), Number(b.readBigUInt64LE(48))),
      'ECORRUPT',
      /id table.*index entry 0/,
    ],
    [
      'metadata block of length 0 (the root inode block)',
      (b) => b.writeUInt16LE(0x8000, Number(b.readBigUInt64LE(64) + (b.readBigUInt64LE(32) >> 16n))),
      'ECORRUPT',
      /inode table at offset \d+: metadata block length 0/,
    ],
    [
      'u64 table start beyond 2^53',
      (b) => b.writeBigUInt64LE(0xffff_0000_0000_0000n, 72),
      'ECORRUPT',
      /directory table start beyond bytes_used/,
    ],
  ];
  test.each(cases)('%s', async (_name, edit, code, message) => {
    const e = await openError(patched(edit));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message);
  });

  test('truncated image', async () => {
    const e = await openError(pristine.subarray(0, Math.floor(pristine.length / 2)));
    expect(e.code).toBe('ECORRUPT');
    expect(e.message).toMatch(/bytes_used .* beyond the image size .*truncated/);
    expect((await openError(pristine.subarray(0, 50))).message).toMatch(/smaller than a superblock/);
  });

  test('fragment index beyond the fragment count fails the inode, not the image', async () => {
    const image = await SquashfsImage.open(memorySource(patched((b) => b.writeUInt32LE(0, 16))));
    await expect(image.stat('/small')).rejects.toMatchObject({
      code: 'ECORRUPT',
      message: expect.stringMatching(/fragment index 0 out of range/),
    });
  });

  test('damaged compressed data fails the read with ECORRUPT', async () => {
    // The first data block of the image (right after the superblock) is garbage now.
    const image = await SquashfsImage.open(memorySource(patched((b) => b.fill(0x55, 96, 160))));
    const errors = await walkAll(image, Date.now() + 10_000);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((e) => e.code === 'ECORRUPT')).toBe(true);
  });

  test('source failures become EIO with the cause', async () => {
    const source = memorySource(pristine);
    const image = await SquashfsImage.open(source);
    source.read = async () => {
      throw new Error('connection reset');
    };
    const e = await image.read('/big', 200_000, 10).catch((err: unknown) => err);
    expect(e).toMatchObject({ code: 'EIO', message: expect.stringContaining('connection reset') });
  });
});

describe('mutations', () => {
  test('flipped bytes and truncations: works or SquashfsError, in bounded time', async () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const metaStart = Number(pristine.readBigUInt64LE(64));
    const bytesUsed = Number(pristine.readBigUInt64LE(40));
    const started = Date.now();
    let opened = 0;
    for (let i = 0; i < 300 && Date.now() - started < 25_000; i++) {
      const b = Buffer.from(pristine);
      const flips = 1 + rnd(4);
      for (let k = 0; k < flips; k++) {
        // Mostly the superblock and metadata (where parsing happens), sometimes data.
        const where = rnd(3) === 0 ? rnd(96) : rnd(4) === 0 ? rnd(metaStart) : metaStart + rnd(bytesUsed - metaStart);
        b[where] = rnd(4) === 0 ? b[where]! ^ (1 << rnd(8)) : rnd(256);
      }
      const bytes = rnd(10) === 0 ? b.subarray(0, rnd(b.length)) : b;
      const t0 = Date.now();
      let image: SquashfsImage | undefined;
      try {
        image = await SquashfsImage.open(memorySource(bytes));
      } catch (e) {
        expect(e, `mutation ${i}`).toBeInstanceOf(SquashfsError);
      }
      if (image) {
        opened++;
        await walkAll(image, t0 + 5000);
      }
      expect(Date.now() - t0, `mutation ${i} took too long`).toBeLessThan(6000);
    }
    expect(opened).toBeGreaterThan(10);
  });
});

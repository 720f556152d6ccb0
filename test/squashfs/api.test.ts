/**
 * Reader API behaviour on real images: lookups (index-accelerated in large directories), errors
 * with codes and paths, streams, random reads against the kernel's bytes, concurrent reads sharing
 * one decompression, and files beyond 4 GiB.
 */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FileSource } from '../../src/r2/file.js';
import { SquashfsImage, SquashfsError } from '../../src/squashfs/index.js';
import { fixture, type Fixture } from '../helpers/fixtures.js';
import { withKernelMount } from '../helpers/kernel-mount.js';
import { countingFileSource } from './helpers.js';

async function expectCode(p: Promise<unknown>, code: string, messagePart?: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(SquashfsError);
  expect((err as SquashfsError).code).toBe(code);
  if (messagePart) expect((err as SquashfsError).message).toContain(messagePart);
}

let gzip: Fixture;
let image: SquashfsImage;
beforeAll(async () => {
  gzip = await fixture('gzip');
  image = await SquashfsImage.open(await FileSource.open(gzip.path));
});
afterAll(async () => {
  await image?.close();
});

describe('lookups', () => {
  test('every name of a 3000-entry directory is found, and matches readdir', async () => {
    const dir = await image.lookup('/bigdir');
    const entries = await image.readdir(dir);
    expect(entries.length).toBe(3002);
    for (const e of entries) {
      const found = await image.lookupChild(dir, e.name);
      expect(found?.ref, e.name).toBe(e.ref);
    }
    expect(await image.lookupChild(dir, 'entry-99999')).toBeUndefined();
    expect(await image.lookupChild(dir, 'a')).toBeUndefined();
    expect(await image.lookupChild(dir, 'zzzz')).toBeUndefined();
  });

  test('a lookup in a large directory reads a few directory blocks via the index, not the listing', async () => {
    const source = await countingFileSource(gzip.path);
    const img = await SquashfsImage.open(source);
    try {
      const sb = img.superblock;
      const dirBlocksRead = () =>
        source.reads.filter(([o]) => o >= sb.directoryTableStart && o < sb.idTableStart).length;
      const dir = await img.lookup('/bigdir');
      const names = (await SquashfsImage.open(await FileSource.open(gzip.path)).then((i) => i.readdir('/bigdir'))).map(
        (e) => e.name,
      );
      const before = dirBlocksRead();
      const last = names[names.length - 3]!; // an entry near the end
      expect(await img.lookupChild(dir, last)).toBeDefined();
      const indexed = dirBlocksRead() - before;
      await img.readdir(dir);
      const whole = dirBlocksRead() - before;
      expect(indexed).toBeLessThanOrEqual(2);
      expect(whole).toBeGreaterThan(8);
    } finally {
      await img.close();
    }
  });

  test('a listed directory is parsed once: looking up each of its names decodes no more metadata', async () => {
    const img = await SquashfsImage.open(await FileSource.open(gzip.path));
    try {
      const metadataReads = () => img.cacheStats().metadataHits + img.cacheStats().metadataMisses;
      for (const path of ['/bigdir', '/names']) {
        const dir = await img.lookup(path);
        const entries = await img.readdir(dir);
        const before = metadataReads();
        for (const e of entries) expect((await img.lookupChild(dir, e.name))?.ref, e.name).toBe(e.ref);
        expect(await img.lookupChild(dir, 'no-such-entry')).toBeUndefined();
        expect(metadataReads() - before, path).toBe(0);
      }
    } finally {
      await img.close();
    }
  });

  test('lookupChildNow answers from a parsed listing and decoded inodes only, the same as lookupChild', async () => {
    const img = await SquashfsImage.open(await FileSource.open(gzip.path));
    try {
      const dir = await img.lookup('/names');
      const first = (await image.readdir('/names'))[0]!.name;
      expect(img.lookupChildNow(dir, first)).toBeUndefined(); // listing not parsed yet
      const entries = await img.readdir(dir); // parses it and decodes every child inode
      expect(entries.some((e) => [...e.name].some((ch) => ch.charCodeAt(0) > 0x7f))).toBe(true);
      for (const e of entries) expect(img.lookupChildNow(dir, e.name), e.name).toBe(await img.lookupChild(dir, e.name));
      expect(img.lookupChildNow(dir, 'no-such-entry')).toBeNull();
      for (const bad of ['', '.', '..', 'a/b', 'a\0b', 'x'.repeat(300)]) expect(img.lookupChildNow(dir, bad), bad).toBeUndefined();
      const file = await img.lookupChild(dir, entries.find((e) => e.type === 'file')!.name);
      expect(img.lookupChildNow(file!, 'x')).toBeUndefined(); // not a directory: lookupChild says ENOTDIR
    } finally {
      await img.close();
    }
  });

  test('deep paths, odd names, "." and ".." components', async () => {
    let p = '/deep';
    for (let i = 0; i < 40; i++) {
      const names = (await image.readdir(p)).map((e) => e.name).filter((n) => n.startsWith('level-'));
      if (names.length === 0) break;
      p += '/' + names[0];
    }
    expect(p.split('/').length).toBeGreaterThan(20);
    expect(Buffer.from(await image.read(`${p}/bottom`, 0, 100)).toString()).toBe('you found it\n');
    expect((await image.stat(`/./deep/../sizes//text-1`)).size).toBe(1);
    const names = await readdir(join(gzip.sourceTree, 'names'));
    expect(names).toContain('a'.repeat(255));
    expect(names).toContain('with space');
    for (const name of names) {
      const st = await image.stat(`/names/${name}`);
      expect(st.ino).toBeGreaterThan(0);
    }
    expect((await image.readdir('/names')).map((e) => e.name).sort()).toEqual([...names].sort());
  });

  test('errors carry a code and the path', async () => {
    await expectCode(image.lookup('/nope/x'), 'ENOENT', '/nope');
    await expectCode(image.lookup('/sizes/text-1/x'), 'ENOTDIR', '/sizes/text-1');
    await expectCode(image.read('/sizes', 0, 10), 'EISDIR');
    await expectCode(image.read('/special/fifo', 0, 10), 'EINVAL');
    await expectCode(image.readdir('/sizes/text-1'), 'ENOTDIR');
    await expectCode(image.readlink('/sizes/text-1'), 'EINVAL');
    await expectCode(image.getXattr('/sizes/text-1', 'user.none'), 'ENODATA');
    await expectCode(image.lookup('/' + 'x'.repeat(300)), 'ENAMETOOLONG');
    await expectCode(image.read('/sizes/text-1', -1, 10), 'EINVAL');
    const err = await image.lookup('/nope').catch((e: SquashfsError) => e);
    expect((err as SquashfsError).path).toBe('/nope');
  });

  test('symlinks are returned verbatim, including a 4000-byte target', async () => {
    expect(await image.readlink('/links/sym-absolute-dangling')).toBe('/nonexistent/target');
    const long = await image.readlink('/links/sym-4000');
    expect(long.length).toBe(4000);
    expect((await image.stat('/links/sym-4000')).size).toBe(4000);
  });

  test('export table maps inode numbers to inodes', async () => {
    const st = await image.stat('/links/hard-1');
    const byNumber = await image.inodeByNumber(st.ino);
    expect(byNumber.stat).toEqual(st);
    expect(st.nlink).toBe(3);
    await expectCode(image.inodeByNumber(image.info.inodeCount + 1), 'EINVAL');
  });

  test('statfs and info', () => {
    expect(image.info.compressor).toBe('gzip');
    expect(image.statfs().files).toBe(image.info.inodeCount);
    expect(image.statfs().nameMax).toBe(256);
  });
});

describe('data', () => {
  test('random ranges equal the kernel mount bytes (all block sizes)', async () => {
    for (const name of ['gzip', 'gzip-4k', 'gzip-uncompressed']) {
      const f = await fixture(name);
      const img = await SquashfsImage.open(await FileSource.open(f.path));
      await withKernelMount(f.path, async (dir) => {
        for (const file of [
          '/sizes/mixed-2M',
          '/sizes/text-1048577',
          '/sparse/holes-3M',
          '/sparse/leading-hole',
          '/sizes/random-300000',
        ]) {
          const fh = await open(join(dir, file));
          const size = (await fh.stat()).size;
          let seed = 12345;
          const rnd = (n: number) => {
            seed = (seed * 1103515245 + 12345) % 2 ** 31;
            return seed % n;
          };
          for (let i = 0; i < 60; i++) {
            const off = rnd(size + 10);
            const len = rnd(i % 3 === 0 ? 600_000 : 9000);
            const want = Buffer.alloc(Math.max(0, Math.min(len, size - off)));
            if (want.length > 0) await fh.read(want, 0, want.length, off);
            const got = await img.read(file, off, len);
            expect(Buffer.compare(Buffer.from(got), want), `${name} ${file} @${off}+${len}`).toBe(0);
          }
          await fh.close();
        }
      });
      await img.close();
    }
  });

  test('createReadStream yields the file, honouring start/end (inclusive)', async () => {
    const whole = Buffer.from(await image.read('/sizes/mixed-2M', 0, 3 << 20));
    const chunks: Buffer[] = [];
    for await (const c of image.createReadStream('/sizes/mixed-2M')) chunks.push(c as Buffer);
    expect(Buffer.compare(Buffer.concat(chunks), whole)).toBe(0);
    const part: Buffer[] = [];
    for await (const c of image.createReadStream('/sizes/mixed-2M', { start: 1000, end: 1_500_000 }))
      part.push(c as Buffer);
    expect(Buffer.compare(Buffer.concat(part), whole.subarray(1000, 1_500_001))).toBe(0);
    const failing = image.createReadStream('/sizes');
    await expect(
      (async () => {
        for await (const _ of failing) void _;
      })(),
    ).rejects.toMatchObject({ code: 'EISDIR' });
  });

  test('concurrent reads of the same blocks decompress each block once', async () => {
    const img = await SquashfsImage.open(await FileSource.open(gzip.path));
    const st = await img.stat('/sizes/text-1048576');
    const reads = await Promise.all(Array.from({ length: 16 }, () => img.read('/sizes/text-1048576', 0, st.size)));
    for (const r of reads) expect(Buffer.compare(Buffer.from(r), Buffer.from(reads[0]!))).toBe(0);
    expect(img.cacheStats().dataMisses).toBe(st.size / img.info.blockSize);
    await img.read('/sizes/text-1048576', 5000, 300_000);
    expect(img.cacheStats().dataMisses).toBe(st.size / img.info.blockSize);
    await img.close();
  });

  test('sequential reads trigger readahead (and only sequential ones); readaheadBytes 0 disables it', async () => {
    const blocksLoaded = async (readaheadBytes: number | undefined, offsets: number[]): Promise<number> => {
      const img = await SquashfsImage.open(await FileSource.open(gzip.path), { readaheadBytes });
      const bs = img.info.blockSize;
      for (const off of offsets) await img.read('/sizes/mixed-2M', off * bs, bs);
      await new Promise((r) => setTimeout(r, 50)); // let the background loads land
      const misses = img.cacheStats().dataMisses;
      await img.close();
      return misses;
    };
    expect(await blocksLoaded(0, [0, 1, 2])).toBe(3);
    expect(await blocksLoaded(undefined, [0, 5, 13])).toBe(3); // random: no readahead
    // 1 MiB ahead of 128 KiB blocks: text blocks 3-7; the random blocks 8-10 are stored uncompressed
    // and a local file reads them straight into the caller's buffer (no block cache, no readahead).
    expect(await blocksLoaded(undefined, [0, 1, 2])).toBeGreaterThanOrEqual(3 + 5);
  });

  test('contiguous blocks of a file are fetched with one source read', async () => {
    const source = await countingFileSource(gzip.path);
    const img = await SquashfsImage.open(source);
    const before = source.reads.length;
    await img.read('/sizes/text-1048576', 0, 1 << 20); // 8 blocks of 128 KiB
    const dataReads = source.reads.slice(before).filter(([o]) => o < img.superblock.inodeTableStart);
    expect(dataReads.length).toBe(1);
    await img.close();
  });

  test('a sparse file beyond 4 GiB reads like the kernel at both ends and across 4 GiB', async () => {
    const f = await fixture('big-sparse');
    const img = await SquashfsImage.open(await FileSource.open(f.path));
    await withKernelMount(f.path, async (dir) => {
      const fh = await open(join(dir, 'sparse-5G'));
      const size = (await fh.stat()).size;
      const st = await img.stat('/sparse-5G');
      expect(st.size).toBe(size);
      expect(st.size).toBeGreaterThan(2 ** 32);
      for (const off of [0, 2 ** 32 - 70_000, 2 ** 32 - 1, 2 ** 32 + 12345, size - 3_000_000, size - 10]) {
        const want = Buffer.alloc(Math.min(3 << 20, size - off));
        await fh.read(want, 0, want.length, off);
        const got = await img.read('/sparse-5G', off, 3 << 20);
        expect(Buffer.compare(Buffer.from(got), want), `@${off}`).toBe(0);
      }
      await fh.close();
    });
    await img.close();
  });
});

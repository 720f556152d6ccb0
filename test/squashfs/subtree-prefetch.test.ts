/**
 * A listed directory's subtree data is hinted to the source in one span (issue 12: a directory
 * listing is a hint that its files are read next), covering every byte the files' reads then need,
 * and never for a subtree larger than the limit.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSource } from '../../src/r2/file.js';
import { SquashfsImage } from '../../src/squashfs/index.js';
import type { ImageContext } from '../../src/squashfs/context.js';
import type { SquashfsInode } from '../../src/squashfs/inode.js';
import { SubtreePrefetch } from '../../src/squashfs/subtree-prefetch.js';
import { wordText } from '../helpers/bytes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
let work: string;
let image: string;
const files = new Map<string, Buffer>();

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'subtree-prefetch-'));
  const tree = join(work, 'tree');
  const put = (rel: string, data: Buffer) => {
    mkdirSync(join(tree, rel, '..'), { recursive: true });
    writeFileSync(join(tree, rel), data);
    files.set(`/${rel}`, data);
  };
  // Sorted before src, so its blocks come first in the image.
  put('big/blob.bin', randomBytes(20 * MiB));
  for (let i = 0; i < 120; i++) put(`src/d${i % 7}/e${i % 3}/f${i}.txt`, wordText(200 + ((i * 7919) % 9000)));
  put('src/mid/stored.bin', randomBytes(300 * KiB)); // blocks and a fragment tail
  put('src/mid/text.txt', wordText(600 * KiB));
  image = join(work, 'img.sqsh');
  execFileSync('mksquashfs', [tree, image, '-noappend', '-quiet', '-no-progress', '-comp', 'gzip', '-b', '128K']);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A local file as a source that takes prefetch hints, recording them and every read. */
async function hintedSource(prefetch?: (offset: number, length: number) => Promise<boolean>) {
  const file = await FileSource.open(image);
  const hints: Array<[number, number]> = [];
  const reads: Array<[number, number]> = [];
  const source = {
    name: file.name,
    size: file.size,
    read: (offset: number, length: number) => {
      reads.push([offset, offset + length]);
      return file.read(offset, length);
    },
    prefetch: async (offset: number, length: number) => {
      hints.push([offset, offset + length]);
      return prefetch ? prefetch(offset, length) : true;
    },
    close: () => file.close(),
  };
  return { source, hints, reads };
}

/** Lets the background walk finish (metadata reads of a local file). */
const settle = () => new Promise((r) => setTimeout(r, 200));

describe('subtree prefetch', () => {
  it('hints one span holding every data byte the listed subtree is then read with', async () => {
    const { source, hints, reads } = await hintedSource();
    const img = await SquashfsImage.open(source, { readaheadBytes: 0 });
    try {
      await img.readdir('/src');
      await settle();
      expect(hints).toHaveLength(1);
      const [start, end] = hints[0]!;
      const dataEnd = img.superblock.inodeTableStart;
      reads.length = 0;
      for (const [path, data] of files) {
        if (!path.startsWith('/src/')) continue;
        expect(Buffer.from(await img.read(path, 0, data.length + 1)).equals(data), path).toBe(true);
      }
      const dataReads = reads.filter(([from]) => from < dataEnd);
      expect(dataReads.length).toBeGreaterThan(0);
      for (const [from, to] of dataReads) {
        expect(from).toBeGreaterThanOrEqual(start);
        expect(to).toBeLessThanOrEqual(end);
      }
      // Not the big file's 20 MiB: about the subtree's own data.
      expect(end - start).toBeLessThan(2 * MiB);
      // Its subdirectories lie inside the span: listing them walks and hints nothing more.
      await img.readdir('/src/d3');
      await img.readdir('/src/mid');
      await settle();
      expect(hints).toHaveLength(1);
    } finally {
      await img.close();
    }
  });

  it('hints nothing for a subtree over the limit, and a failed hint fails no listing', async () => {
    const { source, hints } = await hintedSource(() => Promise.reject(new Error('network down')));
    const img = await SquashfsImage.open(source, { readaheadBytes: 0 });
    try {
      expect((await img.readdir('/')).map((e) => e.name)).toEqual(['big', 'src']);
      await img.readdir('/big');
      await settle();
      expect(hints).toEqual([]); // the root is no hint; 20 MiB under /big: over the 16 MiB limit
      expect((await img.readdir('/src')).map((e) => e.name)).toContain('mid');
      await settle();
      expect(hints).toHaveLength(1); // asked for, rejected, and the listing was fine
      expect(
        Buffer.from(await img.read('/src/mid/text.txt', 0, 10)).equals(files.get('/src/mid/text.txt')!.subarray(0, 10)),
      ).toBe(true);
    } finally {
      await img.close();
    }
  });

  it('stops reading listings once the subtree has more than maxEntries entries', async () => {
    const { source } = await hintedSource();
    const img = await SquashfsImage.open(source, { readaheadBytes: 0 });
    try {
      // The image's own walk, with a tree that counts the listings it is asked for.
      const ctx = (img as unknown as { ctx: ImageContext }).ctx;
      let listings = 0;
      const tree = {
        entries: async (dir: SquashfsInode) => {
          listings++;
          return (await img.readdir(dir)).map((e) => e.ref!);
        },
        inode: (ref: number) => (img as unknown as { inode(r: number): Promise<SquashfsInode> }).inode(ref),
      };
      const src = (await img.lookup('/src')) as SquashfsInode;
      const walk = (maxEntries: number) => new SubtreePrefetch(ctx, tree, async () => true, { maxBytes: 64 * MiB, maxEntries }).spanOf(src);
      expect(await walk(4096)).toBeDefined();
      const all = listings; // /src and its 29 directories
      expect(all).toBe(30);
      listings = 0;
      expect(await walk(50)).toBeUndefined();
      // 8 entries under /src, 23 a level down, then the third level's listings until past 50.
      expect(listings).toBeLessThan(all / 2);
    } finally {
      await img.close();
    }
  });
});

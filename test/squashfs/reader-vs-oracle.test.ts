/**
 * The library's view of every fixture image equals the kernel's loop mount of it (lzma: unsquashfs
 * extraction): type, mode, owner, mtime, size, nlink, rdev, link target, xattrs, sha256, hard-link
 * grouping; plus st_ino / st_blocks / directory size / nlink per path against the kernel's lstat.
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { FileSource } from '../../src/r2/file.js';
import { SquashfsImage } from '../../src/squashfs/index.js';
import type { Inode } from '../../src/squashfs/types.js';
import { ensureFixtures, type Fixture } from '../helpers/fixtures.js';
import { diffManifests, manifestFromReader, manifestFromTree } from '../helpers/manifest.js';
import { withKernelMount, withOracleTree } from '../helpers/kernel-mount.js';

const fixtures = await ensureFixtures();

async function openImage(f: Fixture): Promise<SquashfsImage> {
  return SquashfsImage.open(await FileSource.open(f.path));
}

describe.each(fixtures.map((f) => [f.name, f] as const))('%s', (_name, f) => {
  test('whole tree equals the oracle', async () => {
    const image = await openImage(f);
    try {
      const mine = await manifestFromReader(image);
      const theirs = await withOracleTree(f, async (dir, kind) => ({ kind, manifest: await manifestFromTree(dir) }));
      const diff = diffManifests(theirs.manifest, mine, {
        // Directory st_size is the stored size on the kernel; an extraction recomputes it, and nlink too.
        dirSize: theirs.kind === 'kernel',
        dirNlink: theirs.kind === 'kernel',
      });
      expect(diff).toEqual([]);
      expect(mine.length).toBe(theirs.manifest.length);
      expect(mine.length).toBeGreaterThan(f.name === 'big-sparse' ? 2 : 3000);
    } finally {
      await image.close();
    }
  });

  test.runIf(f.kernelMountable)('st_ino, st_blocks, st_nlink, st_size and st_mtime per path equal the kernel', async () => {
    const image = await openImage(f);
    try {
      await withKernelMount(f.path, async (dir) => {
        const mismatches: string[] = [];
        const walk = async (inode: Inode, rel: string): Promise<void> => {
          const k = await lstat(join(dir, rel), { bigint: true });
          const s = inode.stat;
          const got = { ino: s.ino, blocks: s.blocks, nlink: s.nlink, size: s.size, mtime: s.mtime, mode: s.mode, rdev: s.rdev };
          const want = {
            ino: Number(k.ino),
            blocks: Number(k.blocks),
            nlink: Number(k.nlink),
            size: Number(k.size),
            mtime: Number(k.mtimeMs / 1000n),
            mode: Number(k.mode),
            rdev: Number(k.rdev),
          };
          if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${rel}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
          if (s.type === 'directory') {
            for (const e of await image.readdir(inode)) {
              const child = await image.inode(e.ref);
              expect(e.ino).toBe(child.stat.ino);
              expect(e.type).toBe(child.stat.type);
              await walk(child, `${rel}/${e.name}`);
            }
          }
        };
        await walk(await image.root(), '');
        expect(mismatches.slice(0, 20)).toEqual([]);
      });
    } finally {
      await image.close();
    }
  });
});

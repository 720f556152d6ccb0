/**
 * The kernel engine (src/fs/kernel: FUSE spoken over /dev/fuse without libfuse), through real
 * mounts of images mksquashfs builds here: names that are not UTF-8, hard links, a tree walk that
 * costs one READDIRPLUS per directory and (almost) no LOOKUP or READ per file because listed small
 * files are pushed to the page cache, 1 MiB reads, a failed open that leaves nothing mounted, and
 * the libfuse engine still chosen when asked for.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountpoint, type MountHandle, type MountOptions, mount, mountSourceName } from '../../src/fs/index.js';
import { cleanupMountpoint, tempMountpoint } from './helpers.js';

const execFileP = promisify(execFile);
let work: string;
let image: string;
let tree: string;
const SMALL_FILES = 300;

/** Every regular file under `root`: relative path -> sha256. */
async function digests(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    for (const e of await fsp.readdir(join(root, rel), { withFileTypes: true })) {
      const child = join(rel, e.name);
      if (e.isDirectory()) await visit(child);
      else if (e.isFile())
        out.set(
          child,
          createHash('sha256')
            .update(await fsp.readFile(join(root, child)))
            .digest('hex'),
        );
    }
  };
  await visit('');
  return out;
}

/** Mounts the test image with `options`, runs `body` on it, and unmounts whatever happens. */
async function withMount(
  options: MountOptions,
  body: (dir: string, handle: MountHandle) => Promise<void>,
): Promise<void> {
  const dir = await tempMountpoint();
  const handle = await mount(image, dir, options);
  try {
    await body(dir, handle);
  } finally {
    await handle.unmount();
    await cleanupMountpoint(dir);
  }
}

beforeAll(async () => {
  work = await fsp.mkdtemp(join(tmpdir(), 'kernel-engine-'));
  tree = join(work, 'tree');
  // Small files in nested directories (a source tree), one big file, a name that is not UTF-8,
  // and a hard link.
  for (let i = 0; i < SMALL_FILES; i++) {
    const dir = join(tree, 'src', `d${i % 7}`, `e${i % 3}`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(join(dir, `f${i}.txt`), `file ${i}\n`.repeat(1 + ((i * 37) % 900)));
  }
  await fsp.writeFile(
    join(tree, 'big.bin'),
    Buffer.alloc(5 << 20, 7).map((_, i) => (i * 2654435761) >>> 24),
  );
  await fsp.writeFile(join(tree, Buffer.from([0x6e, 0xff, 0x2e, 0x74]).toString('latin1')), 'latin1 name\n');
  await fsp.writeFile(
    Buffer.concat([Buffer.from(`${tree}/`), Buffer.from([0x62, 0xe9, 0x00]).subarray(0, 2)]),
    'not utf-8\n',
  );
  await fsp.link(join(tree, 'src', 'd0', 'e0', 'f0.txt'), join(tree, 'hardlink.txt'));
  image = join(work, 'image.sqsh');
  await execFileP('mksquashfs', [tree, image, '-comp', 'lz4', '-noappend', '-quiet']);
}, 60_000);

afterAll(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

describe('kernel engine', () => {
  it('serves a tree walk with one READDIRPLUS per directory, no LOOKUP per file, and pushed pages', async () => {
    await withMount({ fuseEngine: 'kernel' }, async (dir, handle) => {
      type KernelStats = ReturnType<typeof handle.stats>['fuse'] & { pushedFiles: number; pendingPushes: number };
      const stats = (): KernelStats => handle.stats().fuse as KernelStats;
      // Listing queues the pushes. They race a walk that reads at once (the bench measures that
      // race); here they are awaited, so what is checked is that pushed pages serve the reads.
      await execFileP('sh', ['-c', 'find src -type f >/dev/null'], { cwd: dir });
      const deadline = Date.now() + 20_000;
      while (stats().pendingPushes > 0 || stats().pushedFiles === 0) {
        if (Date.now() > deadline) throw new Error(`pushes still pending: ${JSON.stringify(stats())}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const readsBefore = stats().byOperation.read?.count ?? 0;
      const { stdout } = await execFileP('sh', ['-c', 'find src -type f -exec cat {} + | wc -c'], { cwd: dir });
      const expected = (await execFileP('sh', ['-c', 'find src -type f -exec cat {} + | wc -c'], { cwd: tree })).stdout;
      expect(stdout.trim()).toBe(expected.trim());
      const after = stats();
      const ops = after.byOperation;
      expect(ops.readdirplus?.count ?? 0).toBeGreaterThan(0);
      // libfuse 2 would send a LOOKUP and a READ for every one of the 300 files.
      expect(ops.lookup?.count ?? 0).toBeLessThan(10);
      expect(after.pushedFiles).toBeGreaterThan(SMALL_FILES / 2);
      expect((ops.read?.count ?? 0) - readsBefore).toBeLessThan(SMALL_FILES / 2);
      // And the bytes, file by file, against the tree the image was made from.
      const ours = await digests(join(dir, 'src'));
      expect(ours).toEqual(await digests(join(tree, 'src')));
    });
  });

  it('a walk that outruns the pushes is served by READs where the pushes have not landed, bytes intact', async () => {
    await withMount({ fuseEngine: 'kernel' }, async (dir, handle) => {
      type KernelStats = ReturnType<typeof handle.stats>['fuse'] & { pushedFiles: number; overtakenFiles: number };
      // Listing and reading in one go: whichever comes first, push or READ, the bytes are right,
      // and every small file is either pushed, read, or both (never neither: cat read them all).
      const ours = await digests(join(dir, 'src'));
      expect(ours).toEqual(await digests(join(tree, 'src')));
      const s = handle.stats().fuse as KernelStats;
      expect(s.pushedFiles + (s.byOperation.read?.count ?? 0)).toBeGreaterThanOrEqual(SMALL_FILES);
    });
  });

  it('mounts with mount(2) and reads /dev/fuse with the native thread (the addon npm install builds), or with mount(8) and a worker; the same bytes; the thread ends at unmount', async () => {
    /** Threads of this process named as the native reader names its own. */
    const nativeReaders = async (): Promise<number> => {
      let n = 0;
      for (const tid of await fsp.readdir('/proc/self/task')) {
        const name = await fsp.readFile(`/proc/self/task/${tid}/comm`, 'utf8').catch(() => '');
        if (name.trim() === 'fuse-reader') n++;
      }
      return n;
    };
    const saved = process.env.SQUASHFS_R2_ADDON;
    try {
      for (const kind of ['native', 'worker'] as const) {
        if (kind === 'worker') process.env.SQUASHFS_R2_ADDON = 'off';
        else delete process.env.SQUASHFS_R2_ADDON;
        expect(await nativeReaders()).toBe(0);
        await withMount({ fuseEngine: 'kernel' }, async (dir, handle) => {
          const fuse = handle.stats().fuse as { readerThread?: string; mountedBy?: string };
          expect(fuse.readerThread).toBe(kind);
          expect(fuse.mountedBy).toBe(kind === 'native' ? 'mount(2)' : 'mount(8)');
          expect(await nativeReaders()).toBe(kind === 'native' ? 1 : 0);
          expect(await digests(join(dir, 'src'))).toEqual(await digests(join(tree, 'src')));
        });
        // Unmounted: the reader saw ENODEV and ended.
        const deadline = Date.now() + 10_000;
        while ((await nativeReaders()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(await nativeReaders()).toBe(0);
      }
    } finally {
      if (saved === undefined) delete process.env.SQUASHFS_R2_ADDON;
      else process.env.SQUASHFS_R2_ADDON = saved;
    }
  });

  it('keeps names that are not UTF-8 byte for byte, and hard links share one inode', async () => {
    await withMount({ fuseEngine: 'kernel' }, async (dir) => {
      const names = (await fsp.readdir(dir, { encoding: 'buffer' })).map((n) => n.toString('hex')).sort();
      const want = (await fsp.readdir(tree, { encoding: 'buffer' })).map((n) => n.toString('hex')).sort();
      expect(names).toEqual(want);
      const odd = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x62, 0xe9])]);
      expect((await fsp.readFile(odd)).toString()).toBe('not utf-8\n');
      const [a, b] = await Promise.all([fsp.stat(join(dir, 'hardlink.txt')), fsp.stat(join(dir, 'src/d0/e0/f0.txt'))]);
      expect(a.ino).toBe(b.ino);
      expect(a.nlink).toBe(2);
    });
  });

  it('reads a big file in no more requests than 128 KiB ones, bytes as written', async () => {
    await withMount({ fuseEngine: 'kernel' }, async (dir, handle) => {
      const [ours, theirs] = await Promise.all([
        fsp.readFile(join(dir, 'big.bin')),
        fsp.readFile(join(tree, 'big.bin')),
      ]);
      expect(ours.equals(theirs)).toBe(true);
      const reads = handle.stats().fuse.byOperation.read?.count ?? 0;
      // 5 MiB in libfuse 2's 128 KiB requests is 40 of them. max_pages lets the kernel send up to
      // 1 MiB; how much it sends at once is its readahead window's (128 KiB from a cold start).
      expect(reads).toBeGreaterThan(0);
      expect(reads).toBeLessThanOrEqual(40);
    });
  });

  it('an image that cannot be opened leaves nothing mounted (the mount is made while it opens)', async () => {
    const dir = await tempMountpoint();
    const bogus = join(work, 'not-an-image.sqsh');
    await fsp.writeFile(bogus, Buffer.alloc(4096, 1));
    try {
      await expect(mount(bogus, dir, { fuseEngine: 'kernel' })).rejects.toThrow(/superblock|magic|squashfs/i);
      expect(isMountpoint(dir)).toBe(false);
      expect(await fsp.readdir(dir)).toEqual([]);
    } finally {
      await cleanupMountpoint(dir);
    }
  });

  it('fuseEngine libfuse still mounts through fuse-native (its stats show no READDIRPLUS)', async () => {
    await withMount({ fuseEngine: 'libfuse' }, async (dir, handle) => {
      const ours = await digests(join(dir, 'src'));
      expect(ours.size).toBe(SMALL_FILES);
      const ops = handle.stats().fuse.byOperation;
      expect(ops.readdirplus).toBeUndefined();
      expect(ops.getattr?.count ?? 0).toBeGreaterThan(SMALL_FILES);
    });
  });

  it('the source the mount table shows before the image is open carries no query or user info', () => {
    expect(mountSourceName('https://u:p@host.example/b/k.sqsh?X-Amz-Signature=abc')).toBe(
      'https://host.example/b/k.sqsh?…',
    );
    expect(mountSourceName('s3://bucket/backups/x/data.sqsh')).toBe('s3://bucket/backups/x/data.sqsh');
    expect(mountSourceName('relative/image.sqsh')).toMatch(/^\/.*\/relative\/image\.sqsh$/);
  });
});

/**
 * The mount as a filesystem under load and under faults, through the library API (in-process):
 * concurrent random reads compared with the kernel mount, read-only answers to every write,
 * statfs, EIO for a failing source read with the mount staying up, unmount with reads in flight,
 * a busy unmount, an unmount done from outside, and the path cache.
 */
import { createHash, randomInt } from 'node:crypto';
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MountHandle, isMountpoint, mount } from '../../src/fs/index.js';
import { PathCache } from '../../src/fs/path-cache.js';
import { FileSource } from '../../src/r2/file.js';
import { SquashfsImage } from '../../src/squashfs/image.js';
import { type Fixture, fixture } from '../helpers/fixtures.js';
import { withKernelMount } from '../helpers/kernel-mount.js';
import { FaultySource, cleanupMountpoint, digestAt, execFileP, openFilesUnder, readInChild, tempMountpoint, waitFor } from './helpers.js';

let image: Fixture;
let dir: string;
let handle: MountHandle;

beforeAll(async () => {
  image = await fixture('zstd');
  dir = await tempMountpoint();
  handle = await mount(image.path, dir);
});
afterAll(async () => {
  await handle?.unmount({ lazyIfBusy: true }).catch(() => undefined);
  await cleanupMountpoint(dir);
});

/** Regular files of at least `minSize` bytes under `root` (relative paths). */
async function bigFiles(root: string, minSize: number): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  const visit = async (rel: string): Promise<void> => {
    for (const entry of await fsp.readdir(join(root, rel), { withFileTypes: true })) {
      const child = join(rel, entry.name);
      if (entry.isDirectory()) await visit(child);
      else if (entry.isFile()) {
        const { size } = await fsp.stat(join(root, child));
        if (size >= minSize) out.push({ path: child, size });
      }
    }
  };
  await visit('');
  return out;
}

describe('reads', () => {
  it('16 concurrent readers (processes) at random offsets get the kernel mount bytes', async () => {
    await withKernelMount(image.path, async (kernel) => {
      const files = await bigFiles(kernel, 256 * 1024);
      expect(files.length).toBeGreaterThan(0);
      const plans = Array.from({ length: 16 }, () =>
        Array.from({ length: 12 }, () => {
          const f = files[randomInt(files.length)] as { path: string; size: number };
          return [f.path, randomInt(0, f.size), randomInt(1, 300_000)] as const;
        }),
      );
      const ours = await Promise.all(plans.map((plan) => readInChild(plan.map(([p, o, l]) => [join(dir, p), o, l]))));
      for (const [i, plan] of plans.entries()) {
        for (const [j, [p, o, l]] of plan.entries()) {
          expect(ours[i]?.[j], `${p} @${o} +${l}`).toBe(await digestAt(join(kernel, p), o, l));
        }
      }
    });
  });

  it('statfs reports the superblock as the kernel does', async () => {
    await withKernelMount(image.path, async (kernel) => {
      const [ours, theirs] = await Promise.all([fsp.statfs(dir), fsp.statfs(kernel)]);
      expect({ bsize: ours.bsize, blocks: ours.blocks, files: ours.files, bfree: ours.bfree }).toEqual({
        bsize: theirs.bsize,
        blocks: theirs.blocks,
        files: theirs.files,
        bfree: theirs.bfree,
      });
    });
  });

  it('missing names are ENOENT, a file used as a directory ENOTDIR, xattr size queries work', async () => {
    await expect(fsp.stat(join(dir, 'no-such-name'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fsp.stat(join(dir, 'no-such-name'))).rejects.toMatchObject({ code: 'ENOENT' });
    const [file] = await bigFiles(dir, 1);
    await expect(fsp.stat(join(dir, file!.path, 'x'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    const { stdout } = await execFileP('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '-R', dir], { maxBuffer: 1 << 24 });
    expect(stdout).toContain('trusted.');
    const missing = await execFileP('getfattr', ['-h', '-n', 'user.no-such-attr', dir]).catch((e: { stderr: string }) => e);
    expect(String((missing as { stderr: string }).stderr)).toMatch(/No such attribute/);
  });
});

describe('read-only', () => {
  it('answers every write with EROFS', async () => {
    const [file] = await bigFiles(dir, 1);
    const f = join(dir, file!.path);
    const attempts: [string, () => Promise<unknown>][] = [
      ['create', () => fsp.writeFile(join(dir, 'new-file'), 'x')],
      ['open for writing', () => fsp.open(f, 'r+')],
      ['open with O_TRUNC', () => fsp.open(f, constants.O_RDONLY | constants.O_TRUNC)],
      ['append', () => fsp.appendFile(f, 'x')],
      ['truncate', () => fsp.truncate(f, 0)],
      ['mkdir', () => fsp.mkdir(join(dir, 'new-dir'))],
      ['unlink', () => fsp.unlink(f)],
      ['rmdir', () => fsp.rmdir(join(dir, 'empty-dir'))],
      ['rename', () => fsp.rename(f, join(dir, 'renamed'))],
      ['link', () => fsp.link(f, join(dir, 'hard-new'))],
      ['symlink', () => fsp.symlink('x', join(dir, 'sym-new'))],
      ['chmod', () => fsp.chmod(f, 0o600)],
      ['chown', () => fsp.chown(f, 1, 1)],
      ['utimes', () => fsp.utimes(f, 1, 1)],
      ['mknod (fifo)', () => execFileP('mkfifo', [join(dir, 'fifo-new')])],
      ['setxattr', () => execFileP('setfattr', ['-n', 'user.x', '-v', '1', f])],
      ['removexattr', () => execFileP('setfattr', ['-x', 'user.x', f])],
      ['access W_OK', () => fsp.access(f, constants.W_OK)],
    ];
    for (const [what, attempt] of attempts) {
      const error = await attempt().then(
        () => undefined,
        (e: { code?: string; stderr?: string }) => e,
      );
      expect(error, what).toBeDefined();
      expect(error?.code === 'EROFS' || /read-only/i.test(error?.stderr ?? ''), `${what}: ${JSON.stringify(error)}`).toBe(true);
    }
    await expect(fsp.access(f, constants.R_OK)).resolves.toBeUndefined();
  });
});

describe('faults and unmounting', () => {
  it('a failing source read is EIO for that read; the mount stays up', async () => {
    const inner = await FileSource.open(image.path);
    const source = new FaultySource(inner);
    const mp = await tempMountpoint();
    const h = await mount(source, mp);
    try {
      const files = await bigFiles(mp, 256 * 1024);
      const victim = files[0]!;
      const before = await readAt(join(mp, victim.path), 0, 4096);
      expect(before.length).toBe(4096);
      source.failRange = [0, source.size];
      const failed = await readAt(join(mp, victim.path), victim.size - 200_000, 100_000).catch((e: NodeJS.ErrnoException) => e);
      expect((failed as NodeJS.ErrnoException).code).toBe('EIO');
      source.failRange = undefined;
      const after = await readAt(join(mp, victim.path), victim.size - 200_000, 100_000);
      expect(after.length).toBe(100_000);
      expect(h.stats().fuse.ioErrors).toBeGreaterThan(0);
    } finally {
      await h.unmount({ lazyIfBusy: true });
      await cleanupMountpoint(mp);
    }
  });

  it('a read whose source stalls past the operation timeout fails (ETIMEDOUT); the mount stays up', async () => {
    const source = new FaultySource(await FileSource.open(image.path));
    const mp = await tempMountpoint();
    const h = await mount(source, mp, { operationTimeoutMs: 400 });
    let release!: () => void;
    try {
      const victim = (await bigFiles(mp, 256 * 1024))[0]!;
      source.gate = new Promise((r) => {
        release = r;
      });
      const started = Date.now();
      const failed = await readAt(join(mp, victim.path), victim.size - 200_000, 100_000).catch((e: NodeJS.ErrnoException) => e);
      expect(['ETIMEDOUT', 'EIO']).toContain((failed as NodeJS.ErrnoException).code);
      expect(Date.now() - started).toBeGreaterThanOrEqual(390);
      expect(h.stats().fuse.timedOut).toBeGreaterThan(0);
      source.gate = undefined;
      release();
      const after = await readAt(join(mp, victim.path), victim.size - 200_000, 100_000);
      expect(after.length).toBe(100_000);
    } finally {
      source.gate = undefined;
      release?.();
      await h.unmount({ lazyIfBusy: true });
      await cleanupMountpoint(mp);
    }
  });

  it('a busy mount is not unmounted without --lazy; lazily it goes, in-flight reads finish', async () => {
    const inner = await FileSource.open(image.path);
    const source = new FaultySource(inner);
    const mp = await tempMountpoint();
    const h = await mount(source, mp);
    let closedEarly = false;
    try {
      const files = await bigFiles(mp, 256 * 1024);
      const picks = files.slice(0, 4);
      const expected: string[] = [];
      // From a reader of its own: reading through the mount (or its reader) here would fill the
      // caches, and the readers below would never reach the source.
      const separate = await SquashfsImage.open(await FileSource.open(image.path));
      for (const f of picks) {
        const bytes = await separate.read(`/${f.path}`, 0, Math.min(f.size, 1 << 20));
        expected.push(`${bytes.length} ${createHash('sha256').update(bytes).digest('hex')}`);
      }
      await separate.close();
      let release!: () => void;
      source.gate = new Promise((r) => {
        release = r;
      });
      // Readers in other processes: this process serves the mount and must not block on it.
      const reads = Array.from({ length: 16 }, (_, i) => {
        const f = picks[i % picks.length]!;
        return readInChild([[join(mp, f.path), 0, Math.min(f.size, 1 << 20)]]).then((lines) => ({ i, line: lines[0] }));
      });
      // All 16 have their file open and wait on the source.
      await waitFor('16 open files', async () => (await openFilesUnder(mp)) >= 16, 90_000);
      await expect(h.unmount()).rejects.toThrow(/busy/);
      void h.closed.then(() => {
        closedEarly = true;
      });
      const unmounted = h.unmount({ lazy: true });
      await waitFor('the detach', () => !isMountpoint(mp));
      release();
      await unmounted;
      // Detached, not broken: every read that was running completes with the right bytes.
      for (const { i, line } of await Promise.all(reads)) expect(line).toBe(expected[i % picks.length]);
      await waitFor('the connection to end', () => closedEarly);
    } finally {
      source.gate = undefined;
      await cleanupMountpoint(mp);
    }
  });

  it('notices an unmount done from outside (fusermount -u) and closes the reader', async () => {
    const mp = await tempMountpoint();
    const h = await mount(image.path, mp);
    try {
      await execFileP('fusermount3', ['-u', mp]);
      await h.closed;
      expect(isMountpoint(mp)).toBe(false);
    } finally {
      await cleanupMountpoint(mp);
    }
  });

  it('notices it even when the next FUSE mount at once takes over the connection number', async () => {
    const [mp, other] = [await tempMountpoint(), await tempMountpoint()];
    const h = await mount(image.path, mp);
    try {
      const { dev } = await fsp.stat(mp);
      await execFileP('fusermount3', ['-u', mp]);
      // The kernel gives the freed device number (and fusectl name) to the next mount.
      await execFileP('squashfuse', [image.path, other]);
      expect((await fsp.stat(other)).dev).toBe(dev);
      const closed = await Promise.race([h.closed.then(() => true), new Promise((r) => setTimeout(r, 5_000, false))]);
      expect(closed).toBe(true);
      // And the other mount was left alone.
      expect((await fsp.readdir(other)).length).toBeGreaterThan(0);
    } finally {
      await execFileP('fusermount3', ['-u', other]).catch(() => undefined);
      await cleanupMountpoint(mp);
      await cleanupMountpoint(other);
    }
  });
});

describe('path cache', () => {
  it('resolves from the deepest cached ancestor, one lookupChild per new component', async () => {
    const reader = await SquashfsImage.open(await FileSource.open(image.path));
    try {
      let lookups = 0;
      const counting = Object.create(reader) as typeof reader;
      counting.lookupChild = (d, n) => {
        lookups++;
        return reader.lookupChild(d, n);
      };
      const cache = new PathCache(counting);
      const deep = (await bigFiles(dir, 1)).map((f) => `/${f.path}`).sort((a, b) => b.split('/').length - a.split('/').length)[0]!;
      const depth = deep.split('/').length - 1;
      expect(depth).toBeGreaterThan(1);
      const first = await cache.resolve(deep);
      expect(lookups).toBe(depth);
      expect(await cache.resolve(deep)).toBe(first);
      expect(lookups).toBe(depth);
      await expect(cache.resolve(`${deep.slice(0, deep.lastIndexOf('/'))}/no-such`)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(lookups).toBe(depth + 1);
    } finally {
      await reader.close();
    }
  });
});

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fsp.open(path);
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

/**
 * Mounts (in this process) an image of `count` files sub/f0..f<count-1>, made by mksquashfs with
 * `mksquashfsArgs`, runs `use` on the mount and removes everything afterwards.
 */
async function withSmallImage(
  count: number,
  content: (i: number) => string,
  mksquashfsArgs: string[],
  use: (mp: string, h: MountHandle) => Promise<void>,
): Promise<void> {
  const work = await fsp.mkdtemp(join(tmpdir(), 'small-image-'));
  const mp = await tempMountpoint();
  let h: MountHandle | undefined;
  try {
    await fsp.mkdir(join(work, 'tree', 'sub'), { recursive: true });
    for (let i = 0; i < count; i++) await fsp.writeFile(join(work, 'tree', 'sub', `f${i}`), content(i));
    const img = join(work, 'img.sqsh');
    await execFileP('mksquashfs', [join(work, 'tree'), img, ...mksquashfsArgs, '-noappend', '-quiet', '-no-progress']);
    h = await mount(img, mp);
    await use(mp, h);
  } finally {
    await h?.unmount({ lazyIfBusy: true }).catch(() => undefined);
    await cleanupMountpoint(mp);
    await fsp.rm(work, { recursive: true, force: true });
  }
}

describe('opens', () => {
  it('cost no request: one OPEN in all, answered ENOSYS, and each file read once however often it is opened', async () => {
    const content = (i: number) => `file ${i}\n`.repeat(i + 1);
    await withSmallImage(30, content, [], async (mp, h) => {
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 30; i++) expect(await fsp.readFile(join(mp, 'sub', `f${i}`), 'utf8')).toBe(content(i));
      }
      // Opened for writing or truncation: refused by the kernel, with nothing asked of the mount.
      await expect(fsp.open(join(mp, 'sub', 'f1'), 'r+')).rejects.toMatchObject({ code: 'EROFS' });
      const ops = h.stats().fuse.byOperation;
      // The kernel stopped sending OPEN after the first; each file's pages outlived its closes.
      expect(ops.open).toEqual({ count: 1, errors: 0 });
      expect(ops.read?.count).toBe(30);
    });
  });
});

describe('an image without xattrs', () => {
  it('answers getxattr EOPNOTSUPP and the kernel stops asking (one request in all); listxattr gives an empty list', async () => {
    await withSmallImage(20, (i) => `file ${i}\n`, ['-no-xattrs'], async (mp, h) => {
      const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (e: { stderr?: string }) => String(e.stderr).trim().split(': ').pop());
      for (let i = 0; i < 20; i++) {
        const f = join(mp, 'sub', `f${i}`);
        expect(await outcome(execFileP('getfattr', ['-h', '-n', 'trusted.overlay.opaque', f]))).toBe('Operation not supported');
      }
      // listxattr still answers (an empty list): tools that copy attributes see none and carry on.
      expect(await outcome(execFileP('getfattr', ['-h', '-d', '-m', '-', join(mp, 'sub', 'f1')]))).toBe('ok');
      const ops = h.stats().fuse.byOperation;
      expect(ops.getxattr).toEqual({ count: 1, errors: 1 });
      expect(ops.listxattr).toEqual({ count: 1, errors: 0 });
      expect(await fsp.readFile(join(mp, 'sub', 'f7'), 'utf8')).toBe('file 7\n');
    });
  });
});

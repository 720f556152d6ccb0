/**
 * The reference views of an image: the kernel's squashfs driver (loop mount, root only) and, for
 * legacy lzma which the kernel cannot mount, `unsquashfs -d` extraction.
 *
 * `mount -o loop` attaches the loop device with autoclear, so the kernel detaches exactly our
 * device at umount, and a test killed between attach and mount cannot leave one behind (attaching
 * with `losetup` first could).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function retry(what: string, attempts: number, fn: () => Promise<unknown>): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await fn();
      return;
    } catch (e) {
      if (i >= attempts) throw new Error(`${what} failed after ${attempts} attempts: ${(e as Error).message}`);
      await sleep(100 * i);
    }
  }
}

/** Loop-mounts `image` read-only, runs `fn(mountDir)`, then always unmounts (which detaches the loop device). */
export async function withKernelMount<T>(image: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'sqfs-kmount-'));
  let mounted = false;
  try {
    await execFileP('mount', ['-t', 'squashfs', '-o', 'loop,ro', image, dir]);
    mounted = true;
    return await fn(dir);
  } finally {
    if (mounted) await retry(`umount ${dir}`, 20, () => execFileP('umount', [dir]));
    await rmdir(dir).catch(() => undefined);
  }
}

/** Extracts `image` with `unsquashfs -d` into a fresh temp dir, runs `fn(dir)`, then removes it. */
export async function withUnsquashfsExtract<T>(image: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const parent = await mkdtemp(join(tmpdir(), 'sqfs-unsq-'));
  const dir = join(parent, 'root');
  try {
    await execFileP('unsquashfs', ['-q', '-n', '-d', dir, image], { maxBuffer: 64 * 1024 * 1024 });
    return await fn(dir);
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
}

export type OracleKind = 'kernel' | 'unsquashfs';

/**
 * The best available reference tree for an image: the kernel mount when it can mount the image,
 * otherwise an `unsquashfs -d` extraction (see UNSQUASHFS_DIFFERENCES for what that view lacks).
 */
export async function withOracleTree<T>(
  image: { path: string; kernelMountable: boolean },
  fn: (dir: string, kind: OracleKind) => Promise<T>,
): Promise<T> {
  return image.kernelMountable
    ? withKernelMount(image.path, (dir) => fn(dir, 'kernel'))
    : withUnsquashfsExtract(image.path, (dir) => fn(dir, 'unsquashfs'));
}

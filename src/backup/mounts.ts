import { isMountpoint, mountEntry as visibleMount, mountTable } from '../fs/mountpoint.js';
import { unmountFuse as fsUnmount } from '../fs/unmount.js';

/**
 * The mount table and FUSE unmounting as restores use them (on top of src/fs's one mechanism).
 * Only paths this module is given are ever unmounted; callers pass paths they created themselves
 * (a restore's overlay and lower mount).
 */

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

export function readMounts(): MountEntry[] {
  return mountTable().map((m) => ({ mountPoint: m.mountpoint, fsType: m.fstype, source: m.source }));
}

export function isMountPoint(path: string): boolean {
  return isMountpoint(path);
}

export function mountEntry(path: string): MountEntry | undefined {
  const m = visibleMount(path);
  return m && { mountPoint: m.mountpoint, fsType: m.fstype, source: m.source };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 20,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(stepMs);
  }
}

export interface UnmountResult {
  /** true when the normal unmount was refused (busy) and a lazy detach was used instead. */
  lazy: boolean;
}

/**
 * Unmounts a restore's FUSE mount if it is mounted: a plain unmount, retried briefly because a
 * just-closed file can keep it busy for a moment, then (unless `lazyIfBusy: false`) a lazy one.
 */
export async function unmountFuse(path: string, options: { lazyIfBusy?: boolean } = {}): Promise<UnmountResult> {
  if (!isMountpoint(path)) return { lazy: false };
  const result = await fsUnmount(path, { lazyIfBusy: options.lazyIfBusy !== false, busyRetries: 4 });
  return { lazy: result.mode === 'lazy' };
}

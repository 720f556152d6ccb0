import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { logger } from '../../util/log.js';
import { MountError } from '../mountpoint.js';
import { type FuseAddon, fuseAddon } from './addon.js';
import { type ReaderThread, startReader } from './reader-thread.js';

const log = logger('mount');

/** The filesystem type our mounts show (the same as libfuse's `subtype=squashfs-r2`). */
export const KERNEL_FSTYPE = 'fuse.squashfs-r2';

/**
 * The watchdog of the mount at "$1": it waits on its stdin, a pipe from the server. A line on it
 * (DISARM) means the server unmounts by itself; end of file means the server died, even by SIGKILL,
 * and the watchdog detaches the mount if it is still ours (libfuse's auto_unmount, without fusermount).
 */
const WATCHDOG_SCRIPT = `read _disarmed && exit 0
[ "$(findmnt -n -o FSTYPE -M "$1" 2>/dev/null | tail -n 1)" = ${KERNEL_FSTYPE} ] && exec umount -l -- "$1"
exit 0`;
const DISARM = 'disarm\n';

/**
 * The environment of the watchdog and of mount(8): a PATH to find them, nothing of ours (the
 * server's holds credentials, and /proc/<pid>/environ would show them for as long as the mount lives).
 */
function helperEnv(): { PATH: string } {
  return { PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' };
}

/**
 * Without the addon: mount(8) gets our /dev/fuse descriptor as fd 3 (`-i`: no mount.fuse helper), the
 * shell then closes its copy, says "ok", and goes on as the watchdog above.
 */
const MOUNT_SCRIPT = `mount -i -t ${KERNEL_FSTYPE} -o "$1" -- "$2" "$3" 3<&3 || exit 1
exec 3<&-
echo ok
[ "$4" = watch ] || exit 0
set -- "$3"
${WATCHDOG_SCRIPT}`;

/** Whether this process may mount without libfuse: mount(2) of a FUSE filesystem needs root. */
export function canMountDirectly(): boolean {
  return process.getuid?.() === 0;
}

export type FuseEngine = 'auto' | 'kernel' | 'libfuse';

/**
 * Which engine serves a mount: 'kernel' (the default where it can mount: root) speaks /dev/fuse
 * itself; 'libfuse' goes through fuse-native and libfuse 2. SQUASHFS_R2_FUSE_ENGINE sets the default.
 */
export function useKernelEngine(engine: FuseEngine | undefined): boolean {
  const choice = engine ?? (process.env.SQUASHFS_R2_FUSE_ENGINE as FuseEngine | undefined) ?? 'auto';
  if (choice === 'libfuse') return false;
  if (choice === 'kernel' && !canMountDirectly()) {
    throw new MountError(
      'the kernel FUSE engine mounts with mount(2), which needs root: run as root, or use --fuse-engine libfuse',
    );
  }
  return canMountDirectly();
}

export interface DeviceMountOptions {
  /** Shown as the mount's source (fsname). */
  source: string;
  /** The root directory's st_mode (its type bits go to the kernel as rootmode). */
  rootMode: number;
  allowOther?: boolean;
  autoUnmount?: boolean;
}

export interface MountedDevice {
  fd: number;
  /** The thread that reads requests (readRequests starts it reading). */
  reader: ReaderThread;
  /** mount(2) from the addon, or mount(8) where the addon is missing. */
  mountedBy: 'mount(2)' | 'mount(8)';
  /** Stops the watchdog without letting it unmount (the mount is being unmounted by us). */
  disarm(): void;
}

/**
 * Opens /dev/fuse and mounts it on `target`. The kernel sends INIT at once; requests wait in
 * /dev/fuse until the session reads them, so the image may still be opening meanwhile.
 */
export async function mountDevice(target: string, options: DeviceMountOptions): Promise<MountedDevice> {
  let fd: number;
  try {
    fd = openSync('/dev/fuse', constants.O_RDWR);
  } catch (e) {
    throw new MountError(`cannot open /dev/fuse: ${(e as Error).message}`, { cause: e });
  }
  // A reader worker (without the addon) boots while mount(8) runs and, mounted early, the image opens.
  const reader = startReader(fd);
  const fuseData = (deviceFd: number) =>
    [
      `fd=${deviceFd}`,
      `rootmode=${(options.rootMode & 0o170000).toString(8)}`,
      `user_id=${process.getuid?.() ?? 0}`,
      `group_id=${process.getgid?.() ?? 0}`,
      // The kernel checks modes itself, as it does for the kernel's own squashfs.
      'default_permissions',
      ...(options.allowOther ? ['allow_other'] : []),
    ].join(',');
  const watch = options.autoUnmount ?? true;
  const addon = fuseAddon();
  if (addon) {
    try {
      addon.mount(sanitizeSource(options.source), target, KERNEL_FSTYPE, fuseData(fd));
    } catch (e) {
      reader.discard();
      closeSync(fd);
      throw new MountError(`cannot mount on ${target}: ${(e as Error).message}`, { cause: e });
    }
    return { fd, reader, mountedBy: 'mount(2)', disarm: watch ? startWatchdog(addon, target) : () => undefined };
  }
  const data = `ro,nosuid,nodev,${fuseData(3)}`;
  // Only this fallback needs node:child_process: loaded here, not at every mount server's start.
  const { spawn } = await import('node:child_process');
  const child = spawn(
    '/bin/sh',
    ['-c', MOUNT_SCRIPT, 'squashfs-r2-mount', data, sanitizeSource(options.source), target, watch ? 'watch' : ''],
    {
      stdio: ['pipe', 'pipe', 'pipe', fd],
      detached: true,
      env: helperEnv(),
    },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const ok = await new Promise<boolean>((done) => {
    child.stdout!.once('data', () => done(true));
    child.once('exit', () => done(false));
    child.once('error', () => done(false));
  });
  if (!ok) {
    reader.discard();
    closeSync(fd);
    throw new MountError(`cannot mount on ${target}: ${stderr.trim() || 'mount failed'}`);
  }
  child.stdout!.destroy();
  child.stderr!.destroy();
  child.unref();
  const stdin = child.stdin!;
  stdin.on('error', () => undefined); // the watchdog is gone already (EPIPE)
  (stdin as unknown as { unref?: () => void }).unref?.();
  // The pipe's own handle must not keep the event loop alive either.
  (stdin as unknown as { _handle?: { unref(): void } })._handle?.unref();
  let armed = watch;
  return {
    fd,
    reader,
    mountedBy: 'mount(8)',
    disarm() {
      if (!armed) return;
      armed = false;
      stdin.end(DISARM);
    },
  };
}

/**
 * Starts the watchdog of a mount made by mount(2) (WATCHDOG_SCRIPT); returns what disarms it. A
 * watchdog that cannot start leaves the mount served, only without its auto-unmount: said, not fatal.
 */
function startWatchdog(addon: FuseAddon, target: string): () => void {
  let pipe: number | undefined;
  try {
    pipe = addon.spawnWatchdog(['/bin/sh', '-c', WATCHDOG_SCRIPT, 'squashfs-r2-watchdog', target], [
      `PATH=${helperEnv().PATH}`,
    ]);
  } catch (e) {
    log.warn(`${target}: no watchdog (the mount stays if this process dies): ${(e as Error).message}`);
  }
  return () => {
    if (pipe === undefined) return;
    const fd = pipe;
    pipe = undefined;
    try {
      writeSync(fd, DISARM);
    } catch {
      // the watchdog is gone already (EPIPE)
    }
    closeSync(fd);
  };
}

/** The source field: no separators or whitespace (mount(8) would split them). */
function sanitizeSource(name: string): string {
  const clean = name.replace(/[,\s\\="']/g, '_');
  return clean.length > 200 ? `...${clean.slice(-200)}` : clean || 'squashfs-r2';
}

export interface RequestChannel {
  /** Stops handing requests on (the worker's blocked read ends when the mount goes). */
  close(): void;
}

/** Starts the device's reader and hands each request to `onRequest`; `onEnd` once the device is gone. */
export function readRequests(
  device: MountedDevice,
  onRequest: (req: Buffer) => void,
  onEnd: (reason: string) => void,
): RequestChannel {
  let ended = false;
  const end = (reason: string): void => {
    if (ended) return;
    ended = true;
    onEnd(reason);
  };
  const failed = device.reader.failed;
  if (failed !== undefined) {
    queueMicrotask(() => end(failed));
    return { close: () => undefined };
  }
  device.reader.start((m) => {
    if (ended) return;
    if (typeof m === 'string') end(m);
    else onRequest(m);
  });
  return {
    close() {
      ended = true;
    },
  };
}

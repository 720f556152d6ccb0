import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { MountError } from '../mountpoint.js';
import { MIN_READ_BUFFER } from './protocol.js';

/** The filesystem type our mounts show (the same as libfuse's `subtype=squashfs-r2`). */
export const KERNEL_FSTYPE = 'fuse.squashfs-r2';

/**
 * Mounts and, unless told not to, stays as the watchdog: mount(8) gets our /dev/fuse descriptor as
 * fd 3 (`-i`: no mount.fuse helper), the shell then closes its copy, says "ok", and waits on its stdin,
 * a pipe from the server. When the server dies, even by SIGKILL, the pipe closes and the shell
 * detaches the mount if it is still ours (libfuse's auto_unmount, without fusermount). A clean
 * unmount kills the watchdog first.
 */
const MOUNT_SCRIPT = `mount -i -t ${KERNEL_FSTYPE} -o "$1" -- "$2" "$3" 3<&3 || exit 1
exec 3<&-
echo ok
[ "$4" = watch ] || exit 0
read _ignored
[ "$(findmnt -n -o FSTYPE -M "$3" 2>/dev/null | tail -n 1)" = ${KERNEL_FSTYPE} ] && exec umount -l -- "$3"
exit 0`;

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
  /** The watchdog shell; killed (without it unmounting) before a clean unmount. */
  watchdog?: ChildProcess;
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
  // Boots while mount(8) runs (and, mounted early, while the image opens).
  const reader = startReader(fd);
  const data = [
    'ro',
    'nosuid',
    'nodev',
    `fd=3`,
    `rootmode=${(options.rootMode & 0o170000).toString(8)}`,
    `user_id=${process.getuid?.() ?? 0}`,
    `group_id=${process.getgid?.() ?? 0}`,
    // The kernel checks modes itself, as it does for the kernel's own squashfs.
    'default_permissions',
    ...(options.allowOther ? ['allow_other'] : []),
  ].join(',');
  const watch = options.autoUnmount ?? true;
  const child = spawn(
    '/bin/sh',
    ['-c', MOUNT_SCRIPT, 'squashfs-r2-mount', data, sanitizeSource(options.source), target, watch ? 'watch' : ''],
    {
      stdio: ['pipe', 'pipe', 'pipe', fd],
      detached: true,
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
    reader.worker.postMessage(false);
    closeSync(fd);
    throw new MountError(`cannot mount on ${target}: ${stderr.trim() || 'mount failed'}`);
  }
  child.stdout!.destroy();
  child.stderr!.destroy();
  child.unref();
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  // The pipe's own handle must not keep the event loop alive either.
  (child.stdin as unknown as { _handle?: { unref(): void } })._handle?.unref();
  return {
    fd,
    reader,
    watchdog: watch ? child : undefined,
    disarm() {
      if (watch && child.exitCode === null) child.kill('SIGKILL');
    },
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

/**
 * Heap limits of the engine's two threads: each only moves buffers along, and V8's default young
 * generation (16 MiB semi-spaces, filled by a request's copy each) would count against the mount's
 * memory bound for nothing.
 */
export const SMALL_THREAD = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 };

/** Big enough for any request but a large write (which the kernel answers E2BIG itself). */
const REQUEST_BUFFER_BYTES = Math.max(MIN_READ_BUFFER * 4, 64 << 10);

/**
 * The reader thread's code: reads FUSE requests from /dev/fuse (blocking, one request per read) and
 * posts each to the main thread, which answers it with write(2) itself. A blocking read needs a
 * thread of its own: Node cannot poll a character device on its event loop, and libuv's pool must
 * stay free for the image's reads and for a process that reads its own mount. It is started before
 * the mount exists (a worker takes 50-150 ms to boot) and reads once told the device is mounted.
 * Source text, not a file: it runs the same from dist/ and from the TypeScript sources under test.
 */
const READER_SOURCE = `
const { readSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const { fd, bufferSize } = workerData;
parentPort.once('message', (go) => {
  if (!go) process.exit(0);
  const buf = Buffer.allocUnsafeSlow(bufferSize);
  for (;;) {
    let n;
    try {
      n = readSync(fd, buf, 0, bufferSize, null);
    } catch (e) {
      // ENOENT: a request was interrupted before it was read; EINTR/EAGAIN: read again.
      if (e.code === 'ENOENT' || e.code === 'EINTR' || e.code === 'EAGAIN') continue;
      // ENODEV: unmounted (the connection is gone). Anything else ends serving too.
      parentPort.postMessage({ end: e.code || String(e) });
      return;
    }
    if (n === 0) {
      parentPort.postMessage({ end: 'EOF' });
      return;
    }
    // A copy of just this request, handed over (a view would clone the whole read buffer).
    const request = Uint8Array.prototype.slice.call(buf, 0, n);
    parentPort.postMessage(request, [request.buffer]);
  }
});
`;

/** A reader thread booting, to read `fd` once it is mounted. */
function startReader(fd: number): ReaderThread {
  const worker = new Worker(READER_SOURCE, {
    eval: true,
    workerData: { fd, bufferSize: REQUEST_BUFFER_BYTES },
    resourceLimits: SMALL_THREAD,
  });
  worker.unref();
  const thread: ReaderThread = { worker };
  // A worker that cannot start (a missing file, no memory) fails before anyone listens: kept for readRequests.
  worker.on('error', (e) => {
    thread.failed ??= e instanceof Error ? e.message : String(e);
  });
  worker.on('exit', (code) => {
    thread.failed ??= `reader thread exited (${code})`;
  });
  return thread;
}

export interface ReaderThread {
  worker: Worker;
  /** Why it stopped, once it has. */
  failed?: string;
}

/** Starts the device's reader and hands each request to `onRequest`; `onEnd` once the device is gone. */
export function readRequests(
  device: MountedDevice,
  onRequest: (req: Buffer) => void,
  onEnd: (reason: string) => void,
): RequestChannel {
  const reader = device.reader;
  const { worker } = reader;
  let ended = false;
  const end = (reason: string): void => {
    if (ended) return;
    ended = true;
    onEnd(reason);
  };
  const failed = reader.failed;
  if (failed !== undefined) {
    queueMicrotask(() => end(failed));
    return { close: () => undefined };
  }
  worker.on('message', (m: Uint8Array | { end: string }) => {
    if (ended) return;
    if (m instanceof Uint8Array) onRequest(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
    else end(m.end);
  });
  worker.on('error', (e) => end(String(e)));
  worker.on('exit', () => end('exit'));
  worker.postMessage(true);
  return {
    close() {
      ended = true;
    },
  };
}

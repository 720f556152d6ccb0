import { createRequire } from 'node:module';
import type * as WorkerThreads from 'node:worker_threads';
import { type FuseAddon, fuseAddon } from './addon.js';
import { MIN_READ_BUFFER } from './protocol.js';

/**
 * The thread that reads FUSE requests from /dev/fuse (blocking, one request per read) and hands each
 * to the event loop, which answers it with write(2) itself. A blocking read needs a thread of its
 * own: Node cannot poll a character device on its event loop, and libuv's pool must stay free for
 * the image's reads and for a process that reads its own mount.
 *
 * Two kinds: a plain thread of our addon (native/fuse_kernel.c, built by `npm install`), which costs
 * nothing to start, and a Node worker, which boots a JavaScript runtime first (55-60 ms of CPU
 * alone, 100-130 ms in a mount's start on a 2-vCPU machine, where it competes with the image's
 * open). The worker runs where the addon was not built or is off (addon.ts).
 */
export interface ReaderThread {
  readonly kind: 'native' | 'worker';
  /** Why it stopped before reading, if it has (a worker that could not boot). */
  readonly failed?: string;
  /** Starts reading: each request as a Buffer, then once the reason reading ended (ENODEV: unmounted). */
  start(onMessage: (message: Buffer | string) => void): void;
  /** Lets go of a reader no mount will take (its device could not be mounted). */
  discard(): void;
}

/**
 * Heap limits of the engine's worker threads: each only moves buffers along, and V8's default young
 * generation (16 MiB semi-spaces, filled by a request's copy each) would count against the mount's
 * memory bound for nothing.
 */
export const SMALL_THREAD = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 };

/** Big enough for any request but a large write (which the kernel answers E2BIG itself). */
const REQUEST_BUFFER_BYTES = Math.max(MIN_READ_BUFFER * 4, 64 << 10);

/** A reader for the device `fd` (mounted or about to be); it reads once started. */
export function startReader(fd: number): ReaderThread {
  const addon = fuseAddon();
  return addon ? nativeThread(addon, fd) : workerThread(fd);
}

function nativeThread(native: FuseAddon, fd: number): ReaderThread {
  let started = false;
  return {
    kind: 'native',
    start(onMessage) {
      if (started) throw new Error('the reader is already reading');
      started = true;
      native.start(fd, REQUEST_BUFFER_BYTES, onMessage);
    },
    discard() {
      // Nothing runs before start().
    },
  };
}

/**
 * The worker's code. It boots before the mount exists and reads once told to.
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

function workerThread(fd: number): ReaderThread {
  // Required here, not with the module: only this fallback (no addon) uses it, and loading it took
  // ~2 ms of every mount server's start.
  const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof WorkerThreads;
  const worker = new Worker(READER_SOURCE, {
    eval: true,
    workerData: { fd, bufferSize: REQUEST_BUFFER_BYTES },
    resourceLimits: SMALL_THREAD,
  });
  worker.unref();
  let failed: string | undefined;
  // A worker that cannot start (a missing file, no memory) fails before anyone listens: kept for start().
  worker.on('error', (e) => {
    failed ??= e instanceof Error ? e.message : String(e);
  });
  worker.on('exit', (code) => {
    failed ??= `reader thread exited (${code})`;
  });
  return {
    kind: 'worker',
    get failed() {
      return failed;
    },
    start(onMessage) {
      worker.on('message', (m: Uint8Array | { end: string }) => {
        if (m instanceof Uint8Array) onMessage(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
        else onMessage(m.end);
      });
      worker.on('error', (e) => onMessage(String(e)));
      worker.on('exit', () => onMessage('exit'));
      worker.postMessage(true);
    },
    discard() {
      void worker.terminate();
    },
  };
}

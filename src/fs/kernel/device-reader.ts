/**
 * Worker thread: reads FUSE requests from /dev/fuse (blocking, one request per read) and posts each to
 * the main thread, which answers it with write(2) itself. A blocking read needs a thread of its own:
 * Node cannot poll a character device on its event loop, and libuv's pool must stay free for the
 * image's reads and for a process that reads its own mount. Started before the mount exists (a
 * worker takes 50-150 ms to boot); it reads once told the device is mounted.
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { fd, bufferSize } = workerData as { fd: number; bufferSize: number };

parentPort!.once('message', (go: boolean) => {
  if (go) serve();
  else process.exit(0);
});

function serve(): void {
  const buf = Buffer.allocUnsafeSlow(bufferSize);
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, buf, 0, bufferSize, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOENT: a request was interrupted before it was read; EINTR/EAGAIN: read again.
      if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') continue;
      // ENODEV: unmounted (the connection is gone). Anything else ends serving too.
      parentPort!.postMessage({ end: code ?? String(e) });
      break;
    }
    if (n === 0) {
      parentPort!.postMessage({ end: 'EOF' });
      break;
    }
    // A copy of just this request, handed over (a view would clone the whole read buffer).
    const request = Uint8Array.prototype.slice.call(buf, 0, n);
    parentPort!.postMessage(request, [request.buffer]);
  }
}

/**
 * Worker thread: writes FUSE_NOTIFY_STORE messages (file bytes for the kernel's page cache) to
 * /dev/fuse. They must not be written from the thread that answers requests: the kernel locks a
 * file's pages to store into them, and a READ of that file holding them waits for an answer only
 * that thread can give. Here a store that waits holds up only later stores.
 */
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { fd } = workerData as { fd: number };

parentPort!.on('message', (message: Uint8Array) => {
  let ok = true;
  try {
    writeSync(fd, message);
  } catch {
    // ENOENT: the kernel no longer has that inode; ENODEV: unmounted. A store is only a hint.
    ok = false;
  }
  parentPort!.postMessage(ok ? message.byteLength : -message.byteLength);
});

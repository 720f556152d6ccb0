// Reads byte ranges in a separate process (so the process serving a FUSE mount never blocks its own
// libuv threads on it) and prints one line per range: the byte count and sha256 of what came back,
// or "error <code>". Usage: node read-at.mjs '[["/path", offset, length], ...]'
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';

for (const [path, offset, length] of JSON.parse(process.argv[2])) {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buf, done, length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
      process.stdout.write(`${done} ${createHash('sha256').update(buf.subarray(0, done)).digest('hex')}\n`);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    process.stdout.write(`error ${e.code ?? e.message}\n`);
  }
}

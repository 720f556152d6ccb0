import type * as ChildProcess from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ConnectionProbe } from './mountpoint.js';

/**
 * A process that serves its own mount must not exit with the mount alive: a request the kernel
 * already handed to us would then wait forever in the kernel (uninterruptibly: its answer can only
 * come from this very process, which is why `kill -9` alone cannot end it). On exit, every mount
 * still served is aborted (fusectl) and detached, synchronously, so pending callers get ENOTCONN.
 */
interface Guarded {
  mountpoint: string;
  connection: ConnectionProbe;
}

const active = new Set<Guarded>();
let installed = false;

export function guardMount(mountpoint: string, connection: ConnectionProbe): () => void {
  if (!installed) {
    installed = true;
    process.once('exit', abortAll);
  }
  const entry: Guarded = { mountpoint, connection };
  active.add(entry);
  return () => active.delete(entry);
}

function abortAll(): void {
  for (const { mountpoint, connection } of active) {
    // Gone already: its fusectl name or mountpoint may belong to someone else's mount by now.
    if (!connection.alive()) continue;
    if (connection.directory) {
      try {
        writeFileSync(`${connection.directory}/abort`, '1');
      } catch {
        // already gone
      }
    }
    try {
      // Required here, synchronously (this runs at exit): at the module's load it cost ~5 ms of every
      // mount server's start.
      const { execFileSync } = createRequire(import.meta.url)('node:child_process') as typeof ChildProcess;
      execFileSync('fusermount3', ['-u', '-z', mountpoint], { stdio: 'ignore', timeout: 5000 });
    } catch {
      // not mounted any more, or fusermount missing: auto_unmount still covers it
    }
  }
  active.clear();
}

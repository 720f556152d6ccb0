import { createRequire } from 'node:module';
import { logger } from '../../util/log.js';

const log = logger('fs');

/**
 * The kernel engine's native helpers (native/fuse_kernel.c, built by `npm install` into
 * build/Release/fuse_kernel.node). Each has a JavaScript fallback that does the same job more slowly,
 * used where the addon was not built or with SQUASHFS_R2_ADDON=off:
 * - start: reads /dev/fuse on a plain thread (fallback: a Node worker, reader-thread.ts);
 * - mount: mount(2), read-only, nosuid, nodev (fallback: mount(8), device.ts);
 * - spawnWatchdog: the auto-unmount watchdog, started with posix_spawn and reaped by a thread of
 *   its own (fallback: the shell that ran mount(8) stays as the watchdog).
 */
export interface FuseAddon {
  start(fd: number, bufferBytes: number, onMessage: (message: Buffer | string) => void): void;
  /** Throws an Error whose code is the errno's name (EPERM, ENOENT, ...). */
  mount(source: string, target: string, fstype: string, data: string): void;
  /**
   * Runs argv with the environment envp ("NAME=value") in a session of its own, stdin a pipe: returns
   * the pipe's write end (close-on-exec).
   */
  spawnWatchdog(argv: string[], envp: string[]): number;
}

let addon: FuseAddon | null | undefined;

/** The addon, loaded once; null where it was not built (said once, at debug level) or is turned off. */
export function fuseAddon(): FuseAddon | null {
  if (process.env.SQUASHFS_R2_ADDON === 'off') return null; // read at each mount: tests turn it off and on
  if (addon !== undefined) return addon;
  addon = null;
  const require = createRequire(import.meta.url);
  // build/ of the repository, from src/fs/kernel (tests) or from dist/src/fs/kernel (the build).
  for (const path of ['../../../build/Release/fuse_kernel.node', '../../../../build/Release/fuse_kernel.node']) {
    try {
      addon = require(path) as FuseAddon;
      return addon;
    } catch {
      // not there: the next, then the fallbacks
    }
  }
  log.debug('no native helpers (build/Release/fuse_kernel.node): a worker reads /dev/fuse, mount(8) mounts');
  return addon;
}

import { release } from 'node:os';
import type { Inode, SquashfsReader } from '../squashfs/types.js';
import { describeError, logger } from '../util/log.js';
import { Deadlines, type Reply } from './deadlines.js';
import { Errno, errnoOf } from './errno.js';
import { PathCache } from './path-cache.js';
import { direntStat, fuseStatOf, toFuseStatfs } from './stat.js';

const log = logger('fs');

/** What a handler's work resolves to: the reply code followed by the reply's values. */
type Answer = [code: number, ...values: unknown[]];
// biome-ignore lint/suspicious/noExplicitAny: fuse-native hands heterogeneous arguments to each op.
type Handler = (...args: any[]) => void;

const W_OK = 2;

/** Every operation that would change the image; each answers EROFS. */
export const WRITE_OPERATIONS = [
  'write',
  'create',
  'mknod',
  'mkdir',
  'unlink',
  'rmdir',
  'rename',
  'link',
  'symlink',
  'chmod',
  'chown',
  'truncate',
  'ftruncate',
  'utimens',
  'setxattr',
  'removexattr',
] as const;

export interface OperationStats {
  operations: number;
  errors: number;
  /** Failures mapped to EIO (corrupt image, failed source read, bugs). */
  ioErrors: number;
  /** Requests answered ETIMEDOUT because their work took longer than the operation timeout. */
  timedOut: number;
  readsInFlight: number;
  bytesRead: number;
  pathCache: { entries: number; hits: number; misses: number };
  /** Requests and failed requests per operation (getattr, getxattr, ...). */
  byOperation: Record<string, { count: number; errors: number }>;
}

export interface Operations {
  handlers: Record<string, Handler>;
  stats(): OperationStats;
  /** Stops the timeout sweep (the mount is gone). */
  close(): void;
}

export interface OperationOptions {
  pathCacheEntries?: number;
  /** A request whose work is still unfinished after this long is answered ETIMEDOUT (default 120 s). */
  timeoutMs?: number;
  /** The kernel's release (os.release()); decides whether opens can go without a request. */
  kernelRelease?: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * The FUSE operations over a reader. Every handler replies exactly once, at once when it can, else
 * when its work settles; no exception escapes to fuse-native (an escaped throw would leave a kernel
 * request unanswered).
 */
export function createOperations(reader: SquashfsReader, options: OperationOptions = {}): Operations {
  const paths = new PathCache(reader, options.pathCacheEntries);
  const deadlines = new Deadlines(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const counters = { operations: 0, errors: 0, ioErrors: 0, readsInFlight: 0, bytesRead: 0 };
  const byOperation: Record<string, { count: number; errors: number }> = {};
  const count = (name: string, failed: boolean): void => {
    const c = (byOperation[name] ??= { count: 0, errors: 0 });
    c.count++;
    if (failed) c.errors++;
  };

  const answer = (name: string, reply: Reply, result: Answer): void => {
    count(name, result[0] < 0);
    safeReply(reply, ...result);
  };
  const fail = (name: string, path: string, reply: Reply, e: unknown): void => {
    const errno = errnoOf(e);
    count(name, true);
    counters.errors++;
    if (errno === Errno.EIO) {
      counters.ioErrors++;
      log.warn(`${name} ${path}: ${describeError(e)}`);
    } else if (log.enabled('debug')) {
      log.debug(`${name} ${path}: ${describeError(e)}`);
    }
    safeReply(reply, errno);
  };

  /**
   * Runs `work`, replies with its result, and turns any failure into an errno reply; ETIMEDOUT
   * if it takes longer than the timeout (then its own answer is dropped).
   */
  function serve(name: string, path: string, reply: Reply, work: () => Promise<Answer>): void {
    counters.operations++;
    const once = deadlines.track(reply);
    let result: Promise<Answer>;
    try {
      result = work();
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (r) => answer(name, once, r),
      (e: unknown) => {
        // Answered ETIMEDOUT already: its late failure (often a copy into the request memory libfuse
        // has freed since, a detached buffer) is no fault of the mount's and no news to anyone.
        if (once.timedOut) {
          if (log.enabled('debug')) log.debug(`${name} ${path} after its timeout: ${describeError(e)}`);
          return;
        }
        fail(name, path, once, e);
      },
    );
  }

  /**
   * Replies with `work(inode of path)`: at once when the path is resolved already (most requests:
   * no promise, no microtask), else once it is.
   */
  function withInode(name: string, path: string, reply: Reply, work: (inode: Inode) => Answer): void {
    const inode = paths.known(path);
    if (inode === undefined) {
      serve(name, path, reply, async () => work(await paths.resolve(path)));
      return;
    }
    counters.operations++;
    let result: Answer;
    try {
      result = work(inode);
    } catch (e) {
      fail(name, path, reply, e);
      return;
    }
    answer(name, reply, result);
  }

  const inodeOf = (path: string): Promise<Inode> => paths.resolve(path);
  const hasXattrs = reader.info.xattrs;
  const readInto = (reader as Partial<ZeroCopyReader>).readInto?.bind(reader);
  const readIntoNow = (reader as Partial<ZeroCopyReader>).readIntoNow?.bind(reader);

  const handlers: Record<string, Handler> = {
    // Stats go out encoded (stat.ts: fuseStatOf; native.ts passes them to the addon as they are).
    getattr(path: string, reply: Reply) {
      withInode('getattr', path, reply, (inode) => [0, fuseStatOf(inode.stat)]);
    },
    fgetattr(path: string, _fd: number, reply: Reply) {
      withInode('fgetattr', path, reply, (inode) => [0, fuseStatOf(inode.stat)]);
    },
    access(path: string, mode: number, reply: Reply) {
      withInode('access', path, reply, () => [mode & W_OK ? Errno.EROFS : 0]);
    },
    statfs(path: string, reply: Reply) {
      serve('statfs', path, reply, async () => [0, toFuseStatfs(reader.statfs())]);
    },
    readdir(path: string, reply: Reply) {
      serve('readdir', path, reply, async () => {
        const dir = await inodeOf(path);
        const entries = await reader.readdir(dir);
        const parent = path === '/' ? dir : await inodeOf(path.slice(0, Math.max(1, path.lastIndexOf('/'))));
        const names = ['.', '..'];
        const stats = [direntStat(dir.stat), direntStat(parent.stat)];
        for (const entry of entries) {
          names.push(entry.name);
          stats.push(direntStat(entry));
        }
        return [0, names, stats];
      });
    },
    // Opens cost no request at all: the first OPEN is answered ENOSYS, which a kernel of FUSE protocol
    // 7.23 (Linux 3.15) or later takes as "this filesystem needs no open". From then on it opens every
    // file itself, sends no OPEN and no RELEASE (two round trips through libfuse per file: about a
    // fifth of a `cat` of a source tree), and keeps each file's pages across opens, as kernel_cache
    // did. Nothing is lost: the mount is read-only ("ro": EROFS for any open for writing or O_TRUNC),
    // the kernel checks modes (default_permissions), and a read names its file by path. Directories
    // are opened by libfuse, whose readdir needs the handle its opendir makes.
    ...(zeroMessageOpens(options.kernelRelease ?? release())
      ? {
          open(_path: string, _flags: number, reply: Reply) {
            counters.operations++;
            count('open', false);
            safeReply(reply, Errno.ENOSYS, 0);
          },
        }
      : {}),
    read(path: string, _fd: number, buffer: Buffer, length: number, position: number, reply: Reply) {
      // The buffer is FUSE's own request memory: fill it in place where the reader can.
      const target = buffer.length > length ? buffer.subarray(0, length) : buffer;
      const known = paths.known(path);
      if (known !== undefined && readIntoNow !== undefined) {
        let n: number | undefined;
        try {
          n = readIntoNow(known, position, target);
        } catch (e) {
          counters.operations++;
          fail('read', path, reply, e);
          return;
        }
        if (n !== undefined) {
          counters.operations++;
          counters.bytesRead += n;
          answer('read', reply, [n]);
          return;
        }
      }
      counters.readsInFlight++;
      serve('read', path, reply, async () => {
        try {
          const inode = known ?? (await inodeOf(path));
          const n = readInto ? await readInto(inode, position, target) : copyInto(target, await reader.read(inode, position, length));
          counters.bytesRead += n;
          return [n];
        } finally {
          counters.readsInFlight--;
        }
      });
    },
    readlink(path: string, reply: Reply) {
      serve('readlink', path, reply, async () => [0, await reader.readlink(await inodeOf(path))]);
    },
    getxattr(path: string, name: string, _position: number, reply: Reply) {
      serve('getxattr', path, reply, async () => {
        // An image without an xattr table has none to give. ENOSYS makes the kernel stop asking (it
        // answers EOPNOTSUPP itself from then on): fuse-overlayfs probes several names per entry.
        if (!hasXattrs) return [Errno.ENOSYS];
        return [0, Buffer.from(await reader.getXattr(await inodeOf(path), name))];
      });
    },
    listxattr(path: string, reply: Reply) {
      serve('listxattr', path, reply, async () => [0, await reader.listXattrs(await inodeOf(path))]);
    },
    // No flush or fsync: there is nothing to write back. An operation left out is not registered
    // with libfuse, whose ENOSYS for the first FLUSH makes the kernel stop sending it; otherwise every
    // close() waits for one more round trip through this process (1,500 of them for `cat` of a tree).
  };
  for (const name of WRITE_OPERATIONS) {
    handlers[name] = (...args: unknown[]) => {
      counters.operations++;
      safeReply(args[args.length - 1] as Reply, Errno.EROFS);
    };
  }

  return {
    handlers,
    close: () => deadlines.stop(),
    stats: () => ({
      ...counters,
      timedOut: deadlines.timedOut,
      byOperation: structuredClone(byOperation),
      pathCache: { entries: paths.size, hits: paths.hits, misses: paths.misses },
    }),
  };
}

/** Linux 3.15 (FUSE 7.23) and later treat ENOSYS from OPEN as success and stop sending OPEN and RELEASE. */
export function zeroMessageOpens(kernelRelease: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 3 || (major === 3 && minor >= 15);
}

/** SquashfsImage's extra: read straight into a caller's buffer (not part of SquashfsReader). */
interface ZeroCopyReader {
  readInto(file: Inode, offset: number, target: Uint8Array): Promise<number>;
  /** The same without waiting when the bytes are at hand, else undefined. */
  readIntoNow(file: Inode, offset: number, target: Uint8Array): number | undefined;
}

function copyInto(target: Uint8Array, data: Uint8Array): number {
  const n = Math.min(data.length, target.length);
  target.set(n === data.length ? data : data.subarray(0, n));
  return n;
}

function safeReply(reply: Reply, code: number, ...values: unknown[]): void {
  try {
    reply(code, ...values);
  } catch (e) {
    log.error(`replying to FUSE failed: ${describeError(e)}`);
  }
}

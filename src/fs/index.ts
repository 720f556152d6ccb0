import { stat } from 'node:fs/promises';
import type { SourceStats } from '../r2/types.js';
import type { ByteSource } from '../squashfs/source.js';
import type { SquashfsReader } from '../squashfs/types.js';
import { describeError, logger } from '../util/log.js';
import { fuseOptions } from './fuse-options.js';
import { type ConnectionProbe, MountError, checkMountpoint, connectionProbe } from './mountpoint.js';
import { guardMount } from './exit-guard.js';
import { createSession } from './native.js';
import { type ImageSource, isRemoteSpec, openByteSource, openReader, type SourceOptions, splitCacheBudget } from './open-image.js';
import { createOperations, type OperationStats } from './operations.js';
import { type UnmountOptions, unmountFuse } from './unmount.js';

export { MountError, checkMountpoint, isMountpoint } from './mountpoint.js';
export { unmountFuse, type UnmountOptions, type UnmountResult } from './unmount.js';
export type { ImageSource, SourceOptions } from './open-image.js';
export { splitCacheBudget } from './open-image.js';

const log = logger('mount');

export interface MountOptions {
  /**
   * Memory for caches. A remote source splits it between raw chunks and decoded blocks (see
   * splitCacheBudget); a local file or a given ByteSource gives it all to the reader's decoded blocks.
   */
  cacheBytes?: number;
  /** Options for s3://, r2:// and http(s):// sources. */
  source?: Omit<SourceOptions, 'cacheBytes' | 'cacheDir' | 'cacheDirMaxBytes'>;
  /** Remote sources: keep fetched chunks on disk here, per object version, across mounts (issue 8). */
  cacheDir?: string;
  /** Size limit of `cacheDir` (whole objects evicted, least recently used). */
  cacheDirMaxBytes?: number;
  /**
   * Remote sources: once mounted, fetch the whole image in the background below every read (needs
   * `cacheDir`, or an image that fits the chunk cache); progress in stats().source.cache.hydration.
   */
  hydrate?: boolean;
  allowOther?: boolean;
  /** Mount even though the mountpoint has entries (they are hidden while mounted). Default: refuse. */
  nonEmpty?: boolean;
  /** Let fusermount remove the mount if this process dies, even by SIGKILL (default true). */
  autoUnmount?: boolean;
  /** Seconds the kernel caches entries and attributes (default one day: the image is immutable). */
  cacheTimeoutSeconds?: number;
  /** A request still unanswered after this long fails with ETIMEDOUT (default 120 s). */
  operationTimeoutMs?: number;
  /** Paths whose inodes are kept resolved (default 65536). */
  pathCacheEntries?: number;
}

export interface MountStats {
  fuse: OperationStats;
  reader?: unknown;
  source?: SourceStats;
}

export interface MountHandle {
  /** Absolute path of the mount. */
  readonly mountpoint: string;
  readonly reader: SquashfsReader;
  /** The source the mount opened (undefined when a ByteSource was given): hydrate, prefetch, observe reads. */
  readonly source?: ImageSource;
  /** Resolves once the kernel connection is gone and the reader and source are closed. */
  readonly closed: Promise<void>;
  /** Unmounts (see unmountFuse) and waits until serving has stopped (a lazy unmount waits for open files). */
  unmount(options?: UnmountOptions): Promise<void>;
  stats(): MountStats;
}

/** How often the connection is checked, to notice an unmount done by someone else (fusermount -u). */
const CONNECTION_POLL_MS = 250;
const DEFAULT_OPERATION_TIMEOUT_MS = 120_000;
/** Longest wait for the reader and source to close once the kernel connection is gone. */
const CLOSE_TIMEOUT_MS = 3_000;

/** Waits for `work`, but no longer than `ms` (then calls `onTimeout` and resolves). */
async function withinMs(ms: number, work: Promise<void>, onTimeout: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((done) => {
    timer = setTimeout(() => {
      onTimeout();
      done();
    }, ms);
    timer.unref();
  });
  await Promise.race([work, timeout]);
  clearTimeout(timer);
}

/**
 * Mounts an image read-only. Resolves once the kernel answers stat on the mountpoint with the
 * image's root; rejects with the cause otherwise (nothing stays mounted or open).
 *
 * The calling process serves the mount from its event loop. It must not read its own mount with
 * blocking calls (fs.*Sync: deadlock), nor with more concurrent fs.promises calls than libuv has
 * threads (UV_THREADPOOL_SIZE, default 4): a local source needs a free thread to answer. Read the
 * mount from other processes, or use the CLI, which serves from a process of its own.
 */
export async function mount(source: string | ByteSource, mountpoint: string, options: MountOptions = {}): Promise<MountHandle> {
  // A bad mountpoint fails before any request is made.
  await checkMountpoint(mountpoint, { nonEmpty: options.nonEmpty });
  const prepared = await prepareMount(source, options);
  try {
    return await prepared.mountAt(mountpoint);
  } catch (e) {
    await prepared.close();
    throw e;
  }
}

/** An image opened (source and reader) but not yet mounted: see prepareMount. */
export interface PreparedMount {
  readonly reader: SquashfsReader;
  /** The source it opened (undefined when a ByteSource was given). */
  readonly source?: ImageSource;
  /** Mounts it (once); the mount owns the reader and source from then on. Same contract as mount(). */
  mountAt(mountpoint: string): Promise<MountHandle>;
  /** Closes the reader and the source it opened, unless a mount took them over (then a no-op). */
  close(): Promise<void>;
}

/**
 * Opens the image without mounting it, so the first round trips overlap other work of the caller
 * (mount-backup opens the archive while it still checks meta.json), and only then mounts.
 */
export async function prepareMount(source: string | ByteSource, options: MountOptions = {}): Promise<PreparedMount> {
  const started = performance.now();
  const ownsSource = typeof source === 'string';
  const remote = ownsSource && isRemoteSpec(source);
  const budget = options.cacheBytes === undefined ? undefined : splitCacheBudget(options.cacheBytes, remote);
  const bytes: ImageSource = ownsSource
    ? await openByteSource(source, {
        ...options.source,
        cacheBytes: budget?.sourceBytes || undefined,
        cacheDir: options.cacheDir,
        cacheDirMaxBytes: options.cacheDirMaxBytes,
      })
    : source;
  const closeSource = async (): Promise<void> => {
    if (ownsSource) await bytes.close?.().catch((e) => log.warn(`closing the source: ${describeError(e)}`));
  };
  let reader: SquashfsReader;
  try {
    reader = await openReader(bytes, { cacheBytes: budget?.readerBytes });
  } catch (e) {
    await closeSource();
    throw e;
  }
  log.debug(`${bytes.name}: source and reader open after ${(performance.now() - started).toFixed(1)} ms`);
  let state: 'open' | 'mounting' | 'done' = 'open';
  return {
    reader,
    source: ownsSource ? bytes : undefined,
    async mountAt(mountpoint) {
      if (state !== 'open') throw new MountError('this image is already mounted or closed');
      const target = await checkMountpoint(mountpoint, { nonEmpty: options.nonEmpty });
      state = 'mounting';
      // From here the mount owns reader and source: serve() closes both if it fails.
      const handle = await serve(reader, target, options, {
        name: bytes.name,
        sourceStats: () => bytes.stats?.(),
        onClosed: closeSource,
      }).finally(() => {
        state = 'done';
      });
      if (options.hydrate) startHydration(bytes, target);
      return ownsSource ? { ...handle, source: bytes } : handle;
    },
    async close() {
      if (state !== 'open') return;
      state = 'done';
      await reader.close().catch((e) => log.warn(`closing the reader: ${describeError(e)}`));
      await closeSource();
    },
  };
}

/** Background hydration after the mount is ready; failures are logged, reads carry on fetching what they need. */
function startHydration(source: ImageSource, target: string): void {
  if (!source.hydrate) {
    log.info(`${target}: nothing to hydrate (the source is not remote)`);
    return;
  }
  source.hydrate().then(
    (h) => log.info(`${target}: hydration ${h.state}: ${h.doneBytes} of ${h.totalBytes} bytes local, ${h.fetchedBytes} fetched`),
    (e) => log.warn(`${target}: hydration not possible: ${describeError(e)}`),
  );
}

/** Mounts a reader that is already open (it is closed on unmount). */
export async function mountReader(reader: SquashfsReader, mountpoint: string, options: MountOptions & { name?: string } = {}): Promise<MountHandle> {
  return serve(reader, await checkMountpoint(mountpoint, { nonEmpty: options.nonEmpty }), options, { name: options.name ?? 'squashfs-r2' });
}

interface ServeContext {
  name: string;
  sourceStats?: () => SourceStats | undefined;
  /** Runs after the reader is closed (closes a source the mount opened). */
  onClosed?: () => Promise<void>;
}

async function serve(reader: SquashfsReader, target: string, options: MountOptions, context: ServeContext): Promise<MountHandle> {
  const started = performance.now();
  try {
    const root = await reader.root();
    const operations = createOperations(reader, { pathCacheEntries: options.pathCacheEntries });
    const session = createSession(target, operations.handlers, {
      options: fuseOptions({ allowOther: options.allowOther, nonEmpty: options.nonEmpty, autoUnmount: options.autoUnmount, fsname: context.name }),
      timeoutMs: options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS,
    });
    await new Promise<void>((done, fail) => {
      session.mount((error) => (error ? fail(new MountError(`cannot mount on ${target}: ${error.message}`, { cause: error })) : done()));
    });
    const probe = await verifyMounted(target, root.stat.ino, () => unmountFuse(target, { lazy: true }).then(() => undefined));
    const alive = probe.alive;
    const unguard = guardMount(target, probe);

    let resolveClosed!: () => void;
    const closed = new Promise<void>((r) => {
      resolveClosed = r;
    });
    let finished = false;
    const finish = async (): Promise<void> => {
      if (finished) return;
      finished = true;
      clearInterval(poll);
      unguard();
      session.release();
      // Bounded: a transport stuck in a retry or a stalled GET must not keep an unmounted server alive.
      await withinMs(
        CLOSE_TIMEOUT_MS,
        (async () => {
          await reader.close().catch((e) => log.warn(`closing the reader: ${describeError(e)}`));
          await context.onClosed?.();
        })(),
        () => log.warn(`${target}: closing the reader and source took over ${CLOSE_TIMEOUT_MS} ms; leaving anyway`),
      );
      log.info(`${target}: unmounted`);
      resolveClosed();
    };
    const poll = setInterval(() => {
      if (!alive()) void finish();
    }, CONNECTION_POLL_MS);

    log.info(`${target}: mounted ${context.name} (kernel mount and first stat ${(performance.now() - started).toFixed(1)} ms)`);
    return {
      mountpoint: target,
      reader,
      closed,
      async unmount(unmountOptions?: UnmountOptions) {
        if (!finished) await unmountFuse(target, unmountOptions);
        // A plain unmount ends the connection at once; a lazy one when the last open file closes.
        if (!alive()) await finish();
        await closed;
      },
      stats: () => ({
        fuse: operations.stats(),
        reader: (reader as { cacheStats?: () => unknown }).cacheStats?.(),
        source: context.sourceStats?.(),
      }),
    };
  } catch (e) {
    await reader.close().catch(() => undefined);
    await context.onClosed?.();
    throw e;
  }
}

/**
 * Proves the mount serves: stat through the kernel must return the image's root inode number.
 * Returns the connection probe; on failure the half-made mount is removed before rejecting.
 */
async function verifyMounted(target: string, rootIno: number, undo: () => Promise<void>): Promise<ConnectionProbe> {
  try {
    const st = await stat(target);
    if (st.ino !== rootIno) throw new MountError(`${target} answers with inode ${st.ino}, not the image root ${rootIno}`);
    return await connectionProbe(target);
  } catch (e) {
    await undo().catch(() => undefined);
    throw e instanceof MountError ? e : new MountError(`${target} did not come up: ${describeError(e)}`, { cause: e });
  }
}

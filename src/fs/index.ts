import type { SourceStats } from '../r2/types.js';
import type { ByteSource } from '../squashfs/source.js';
import type { SquashfsReader } from '../squashfs/types.js';
import { describeError, logger } from '../util/log.js';
import { resolve } from 'node:path';
import { type FuseEngine, type MountedDevice, useKernelEngine } from './kernel/device.js';
import { type EarlyMount, mountEarly } from './kernel/early-mount.js';
import { MountError, checkMountpoint } from './mountpoint.js';
import {
  type ImageSource,
  isRemoteSpec,
  openByteSource,
  openReader,
  preloadReader,
  type SourceOptions,
  splitCacheBudget,
} from './open-image.js';
import type { FuseCpu } from './affinity.js';
import type { OperationStats } from './operations.js';
import type { ServeContext } from './serve.js';
import type { UnmountOptions } from './unmount.js';

export { MountError, checkMountpoint, isMountpoint } from './mountpoint.js';
export { unmountFuse, type UnmountOptions, type UnmountResult } from './unmount.js';
export type { FuseCpu } from './affinity.js';
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
  source?: Omit<SourceOptions, 'cacheBytes' | 'cacheDir' | 'cacheDirMaxBytes' | 'whileOpening'>;
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
  /** A request still unanswered after this long fails with ETIMEDOUT (default 120 s; checked once a second, see deadlines.ts). */
  operationTimeoutMs?: number;
  /** Paths whose inodes are kept resolved (default 65536). */
  pathCacheEntries?: number;
  /**
   * Pin this process's main thread, and so libfuse's threads started from it, to one CPU before
   * serving (see affinity.ts: each request is a hand-off between them). Default 'none': a program
   * that embeds a mount owns its main thread. The CLI's servers use 'auto', which pins for the
   * libfuse engine only (see pinFuseThreads); a CPU number pins with either engine.
   */
  fuseCpu?: FuseCpu;
  /**
   * How the mount talks to the kernel: 'kernel' speaks /dev/fuse itself (READDIRPLUS, reads up to 1 MiB,
   * small files pushed to the page cache; needs root), 'libfuse' goes through fuse-native. Default
   * 'auto': 'kernel' where it can mount, else 'libfuse'. The environment's SQUASHFS_R2_FUSE_ENGINE
   * sets the default.
   */
  fuseEngine?: FuseEngine;
  /**
   * This process does nothing but serve the mount (the CLI's servers): the kernel engine then writes
   * its page-cache stores on libuv's pool rather than booting a second worker thread for them. A
   * process that reads its own mount must leave it unset (its fs.promises calls need the pool).
   */
  servesOnly?: boolean;
}

export type { FuseEngine } from './kernel/device.js';

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

/**
 * Mounts an image read-only. Resolves once the kernel answers stat on the mountpoint with the
 * image's root; rejects with the cause otherwise (nothing stays mounted or open).
 *
 * The calling process serves the mount from its event loop. It must not read its own mount with
 * blocking calls (fs.*Sync: deadlock), nor with more concurrent fs.promises calls than libuv has
 * threads (UV_THREADPOOL_SIZE, default 4): a local source needs a free thread to answer. Read the
 * mount from other processes, or use the CLI, which serves from a process of its own.
 */
export async function mount(
  source: string | ByteSource,
  mountpoint: string,
  options: MountOptions = {},
): Promise<MountHandle> {
  // A bad mountpoint fails before any request is made.
  const target = await checkMountpoint(mountpoint, { nonEmpty: options.nonEmpty });
  // The kernel engine mounts while the image opens (the mount waits for its INIT answer meanwhile).
  // Pinned first (when asked for a CPU), so that the reader thread the mount starts shares it.
  const pinned = pinFuseThreads(options);
  let early: EarlyMount | undefined;
  if (typeof source === 'string' && useKernelEngine(options.fuseEngine)) {
    await pinned;
    early = mountEarly(target, mountSourceName(source), options);
  }
  let prepared: PreparedMount;
  try {
    prepared = await prepareMount(source, options, pinned);
  } catch (e) {
    await early?.abandon();
    throw e;
  }
  try {
    return await prepared.mountAt(target, early && { device: early.device });
  } catch (e) {
    await prepared.close();
    await early?.abandon();
    throw e;
  }
}

/**
 * What the mount table shows as the source of a mount made before the image is open: the path, or
 * the URL without user info or query (a presigned URL's signature must not reach /proc/mounts).
 */
export function mountSourceName(source: string): string {
  if (!isRemoteSpec(source)) return resolve(source);
  try {
    const u = new URL(source);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return 'squashfs-r2';
  }
}

/** An image opened (source and reader) but not yet mounted: see prepareMount. */
export interface PreparedMount {
  readonly reader: SquashfsReader;
  /** The source it opened (undefined when a ByteSource was given). */
  readonly source?: ImageSource;
  /** Mounts it (once); the mount owns the reader and source from then on. Same contract as mount(). */
  mountAt(mountpoint: string, early?: { device: Promise<MountedDevice> }): Promise<MountHandle>;
  /** Closes the reader and the source it opened, unless a mount took them over (then a no-op). */
  close(): Promise<void>;
}

/**
 * Opens the image without mounting it, so the first round trips overlap other work of the caller
 * (mount-backup opens the archive while it still checks meta.json), and only then mounts.
 */
export async function prepareMount(
  source: string | ByteSource,
  options: MountOptions = {},
  alreadyPinned?: Promise<unknown>,
): Promise<PreparedMount> {
  const started = performance.now();
  const ownsSource = typeof source === 'string';
  const remote = ownsSource && isRemoteSpec(source);
  const budget = options.cacheBytes === undefined ? undefined : splitCacheBudget(options.cacheBytes, remote);
  // Pinning spawns taskset; it runs during the image's first round trip and is done before serving.
  const pinned = alreadyPinned ?? pinFuseThreads(options);
  // What mounting needs next (the reader, the FUSE session and its addon: ~40 ms to load) loads while
  // the image's first round trip is in flight, not after it.
  let serving: Promise<typeof import('./serve.js')> | undefined;
  const loadServing = (): void => {
    serving ??= Promise.all([import('./serve.js'), preloadReader()]).then(async ([module]) => {
      await module.preloadServing(options.fuseEngine);
      return module;
    });
    serving.catch(() => undefined); // reported by mountAt, which awaits it
  };
  const bytes: ImageSource = ownsSource
    ? await openByteSource(source, {
        ...options.source,
        cacheBytes: budget?.sourceBytes || undefined,
        cacheDir: options.cacheDir,
        cacheDirMaxBytes: options.cacheDirMaxBytes,
        whileOpening: loadServing,
      })
    : source;
  loadServing(); // a ByteSource was given
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
    async mountAt(mountpoint, early) {
      if (state !== 'open') throw new MountError('this image is already mounted or closed');
      // Mounted early by mount(), which checked the mountpoint before (stat would now wait for us).
      const target = early ? resolve(mountpoint) : await checkMountpoint(mountpoint, { nonEmpty: options.nonEmpty });
      state = 'mounting';
      // From here the mount owns reader and source: serve() closes both if it fails.
      const handle = await serveOn(serving!, reader, target, options, {
        name: bytes.name,
        sourceStats: () => bytes.stats?.(),
        onClosed: closeSource,
        pinned,
        device: early?.device,
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

/** serve() once its module is loaded; if it cannot load, the reader and source are closed all the same. */
async function serveOn(
  serving: Promise<typeof import('./serve.js')>,
  reader: SquashfsReader,
  target: string,
  options: MountOptions,
  context: ServeContext,
): Promise<MountHandle> {
  let serve: typeof import('./serve.js')['serve'];
  try {
    ({ serve } = await serving);
  } catch (e) {
    await reader.close().catch(() => undefined);
    await context.onClosed?.();
    throw e;
  }
  return serve(reader, target, options, context);
}

/** Background hydration after the mount is ready; failures are logged, reads carry on fetching what they need. */
function startHydration(source: ImageSource, target: string): void {
  if (!source.hydrate) {
    log.info(`${target}: nothing to hydrate (the source is not remote)`);
    return;
  }
  source.hydrate().then(
    (h) =>
      log.info(
        `${target}: hydration ${h.state}: ${h.doneBytes} of ${h.totalBytes} bytes local, ${h.fetchedBytes} fetched`,
      ),
    (e) => log.warn(`${target}: hydration not possible: ${describeError(e)}`),
  );
}

/** Mounts a reader that is already open (it is closed on unmount). */
export async function mountReader(
  reader: SquashfsReader,
  mountpoint: string,
  options: MountOptions & { name?: string } = {},
): Promise<MountHandle> {
  const target = await checkMountpoint(mountpoint, { nonEmpty: options.nonEmpty });
  return serveOn(import('./serve.js'), reader, target, options, {
    name: options.name ?? 'squashfs-r2',
    pinned: pinFuseThreads(options),
  });
}

/**
 * Pins the event loop (and the FUSE threads it starts) to one CPU, as `options.fuseCpu` says. 'auto'
 * pins for the libfuse engine only: its every request is a hand-off between a libfuse thread and
 * the event loop (affinity.ts). The kernel engine's reader gained nothing from sharing a CPU (W1 from
 * a local image, walk and big files, pinned or not: the same within noise), and the taskset it waits
 * for, with the reader then booting beside the image's open on one CPU, cost ~60 ms of its start-up.
 */
function pinFuseThreads(options: MountOptions): Promise<unknown> | undefined {
  const choice = options.fuseCpu;
  if (choice === undefined || choice === 'none') return undefined;
  if (choice === 'auto' && kernelEngineChosen(options.fuseEngine)) return undefined;
  return import('./affinity.js').then((m) => m.pinMainThread(choice));
}

function kernelEngineChosen(engine: FuseEngine | undefined): boolean {
  try {
    return useKernelEngine(engine);
  } catch {
    return false; // asked for without root: the mount itself says so
  }
}

import type { SourceStats } from '../r2/types.js';
import type { SquashfsReader } from '../squashfs/types.js';
import { logger } from '../util/log.js';
import { closeServed } from './close-served.js';
import { guardMount } from './exit-guard.js';
import { fuseOptions } from './fuse-options.js';
import type { FuseEngine, MountHandle, MountOptions } from './index.js';
import { SquashfsImage } from '../squashfs/image.js';
import { type MountedDevice, useKernelEngine } from './kernel/device.js';
import { MountError, verifyMounted } from './mountpoint.js';
import { createSession, loadFuse } from './native.js';
import { createOperations } from './operations.js';
import { type UnmountOptions, unmountFuse } from './unmount.js';

/**
 * Serving an open reader on a mountpoint: the FUSE session, the proof that the kernel answers, and the
 * lifecycle until unmounted. Loaded apart from index.ts, so that prepareMount can load it (and the FUSE
 * addon: preloadServing) while the image's first round trip is in flight.
 */

const log = logger('mount');

/** How often the connection is checked, to notice an unmount done by someone else (fusermount -u). */
const CONNECTION_POLL_MS = 250;
const DEFAULT_OPERATION_TIMEOUT_MS = 120_000;

export interface ServeContext {
  name: string;
  sourceStats?: () => SourceStats | undefined;
  /** Runs after the reader is closed (closes a source the mount opened). */
  onClosed?: () => Promise<void>;
  /** Settles once the main thread is pinned (or not): libfuse's threads must start after it. */
  pinned?: Promise<unknown>;
  /** The kernel engine's mount, made while the image was opening (see kernel/early-mount.ts). */
  device?: Promise<MountedDevice>;
}

export async function serve(
  reader: SquashfsReader,
  target: string,
  options: MountOptions,
  context: ServeContext,
): Promise<MountHandle> {
  if (reader instanceof SquashfsImage && useKernelEngine(options.fuseEngine)) {
    kernelEngine ??= await import('./kernel/serve-kernel.js');
    return kernelEngine.serveKernel(reader, target, options, context);
  }
  const started = performance.now();
  try {
    const root = await reader.root();
    await context.pinned?.catch(() => undefined);
    const operations = createOperations(reader, {
      pathCacheEntries: options.pathCacheEntries,
      timeoutMs: options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS,
    });
    const session = createSession(target, operations.handlers, {
      options: fuseOptions({
        allowOther: options.allowOther,
        nonEmpty: options.nonEmpty,
        autoUnmount: options.autoUnmount,
        fsname: context.name,
      }),
    });
    await new Promise<void>((done, fail) => {
      session.mount((error) =>
        error ? fail(new MountError(`cannot mount on ${target}: ${error.message}`, { cause: error })) : done(),
      );
    });
    const probe = await verifyMounted(target, root.stat.ino, () =>
      unmountFuse(target, { lazy: true }).then(() => undefined),
    );
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
      if (log.enabled('debug')) log.debug(`${target}: stats at unmount ${JSON.stringify(stats())}`);
      operations.close();
      unguard();
      session.release();
      await closeServed(target, reader, context.onClosed);
      resolveClosed();
    };
    const poll = setInterval(() => {
      if (!alive()) void finish();
    }, CONNECTION_POLL_MS);

    const stats = () => ({
      fuse: operations.stats(),
      reader: (reader as { cacheStats?: () => unknown }).cacheStats?.(),
      source: context.sourceStats?.(),
    });
    log.info(
      `${target}: mounted ${context.name} (kernel mount and first stat ${(performance.now() - started).toFixed(1)} ms)`,
    );
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
      stats,
    };
  } catch (e) {
    await reader.close().catch(() => undefined);
    await context.onClosed?.();
    throw e;
  }
}

let kernelEngine: typeof import('./kernel/serve-kernel.js') | undefined;

/**
 * Loads what serving needs now, rather than once the image is open: the kernel engine when it will
 * be used, else the FUSE addon (synchronous: ~10 ms).
 */
export async function preloadServing(engine: FuseEngine | undefined): Promise<void> {
  if (useKernelEngine(engine)) kernelEngine ??= await import('./kernel/serve-kernel.js');
  else loadFuse();
}



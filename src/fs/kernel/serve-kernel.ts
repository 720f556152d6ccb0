import { closeSync } from 'node:fs';
import type { SquashfsImage } from '../../squashfs/image.js';
import type { SquashfsInode } from '../../squashfs/inode.js';
import { logger } from '../../util/log.js';
import { closeServed } from '../close-served.js';
import { guardMount } from '../exit-guard.js';
import type { MountHandle, MountOptions } from '../index.js';
import { type ConnectionProbe, verifyMounted } from '../mountpoint.js';
import type { ServeContext } from '../serve.js';
import { type UnmountOptions, unmountFuse } from '../unmount.js';
import { mountDevice, readRequests } from './device.js';
import { deviceOptions } from './early-mount.js';
import { PUSH_DEFAULTS } from './page-push.js';
import { KernelSession } from './session.js';

const log = logger('mount');

const DEFAULT_CACHE_TIMEOUT_S = 86_400;
const DEFAULT_OPERATION_TIMEOUT_MS = 120_000;
const CONNECTION_POLL_MS = 250;

/**
 * Serves an open image on `target` over /dev/fuse directly (see session.ts): the same contract as
 * serve.ts's libfuse path, resolved once the kernel answers stat on the mountpoint with the root.
 */
export async function serveKernel(
  image: SquashfsImage,
  target: string,
  options: MountOptions,
  context: ServeContext,
): Promise<MountHandle> {
  const started = performance.now();
  try {
    const root = (await image.root()) as SquashfsInode;
    await context.pinned?.catch(() => undefined);
    const device = await (context.device ?? mountDevice(target, deviceOptions(context.name, options)));
    let finished = false;
    let resolveClosed!: () => void;
    const closed = new Promise<void>((r) => {
      resolveClosed = r;
    });
    let probe: ConnectionProbe | undefined;
    let unguard: (() => void) | undefined;
    const session = new KernelSession(
      device.fd,
      image,
      root,
      {
        cacheTimeoutSeconds: options.cacheTimeoutSeconds ?? DEFAULT_CACHE_TIMEOUT_S,
        operationTimeoutMs: options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS,
        push: { ...PUSH_DEFAULTS, writeOnPool: options.servesOnly },
      },
      () => void finish(),
    );
    const channel = readRequests(
      device,
      (req) => session.handle(req),
      (reason) => {
        if (reason === 'ENODEV') log.debug(`${target}: the kernel connection ended`);
        else log.error(`${target}: reading requests stopped: ${reason}`);
        void finish();
      },
    );
    const stats = () => ({
      fuse: { ...session.stats(), readerThread: device.reader.kind, mountedBy: device.mountedBy },
      reader: image.cacheStats(),
      source: context.sourceStats?.(),
    });
    const finish = async (): Promise<void> => {
      if (finished) return;
      finished = true;
      clearInterval(poll);
      if (log.enabled('debug')) log.debug(`${target}: stats at unmount ${JSON.stringify(stats())}`);
      session.close();
      channel.close();
      device.disarm();
      unguard?.();
      // Ends a connection that is still there (a reader that failed before INIT was answered): whoever
      // waits on the mountpoint gets ENOTCONN instead of waiting for ever.
      try {
        closeSync(device.fd);
      } catch {
        // closed already
      }
      await closeServed(target, image, context.onClosed);
      resolveClosed();
    };
    const poll = setInterval(() => {
      if (probe !== undefined && !probe.alive()) void finish();
    }, CONNECTION_POLL_MS);
    poll.unref();

    try {
      probe = await verifyMounted(target, root.stat.ino, async () => {
        device.disarm();
        await unmountFuse(target, { lazy: true });
      });
    } catch (e) {
      await finish();
      throw e;
    }
    // Serving keeps the process alive while mounted (the worker is unref'd; this timer is not).
    const keepAlive = setInterval(() => undefined, 1 << 30);
    void closed.then(() => clearInterval(keepAlive));
    unguard = guardMount(target, probe);
    log.info(
      `${target}: mounted ${context.name} over /dev/fuse (kernel mount and first stat ${(performance.now() - started).toFixed(1)} ms)`,
    );
    return {
      mountpoint: target,
      reader: image,
      closed,
      async unmount(unmountOptions?: UnmountOptions) {
        // The watchdog stays until the connection is gone (finish disarms it): a failed unmount
        // leaves the mount served and still guarded.
        if (!finished) await unmountFuse(target, unmountOptions);
        if (probe !== undefined && !probe.alive()) await finish();
        await closed;
      },
      stats,
    };
  } catch (e) {
    await image.close().catch(() => undefined);
    await context.onClosed?.();
    throw e;
  }
}

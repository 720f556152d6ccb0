import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type FuseCpu, parseFuseCpu } from '../../fs/affinity.js';
import type { FuseEngine } from '../../fs/kernel/device.js';
import type { RemoteObject } from '../../r2/types.js';
import { configureLogging, describeError, type LogLevel } from '../../util/log.js';
import { parseSize } from '../../util/size.js';
import { UsageError } from '../usage-error.js';

export const usage = `usage: squashfs-r2 mount <source> <mountpoint> [options]

Mounts a SquashFS image read-only with FUSE. <source> is a local path, s3://bucket/key,
r2://bucket/key or an http(s):// URL. Returns once the mount serves and keeps serving in the
background; unmount with "squashfs-r2 unmount <mountpoint>" (or fusermount -u).

options:
  --cache-size SIZE   memory for caches, in total (e.g. 64M, 1G). A remote image gives 1/8 of it
                      (4M to 64M) to decoded blocks and the rest to raw chunks; a local file gives it
                      all to decoded blocks (the kernel's page cache holds its raw bytes).
                      Unset: 64M decoded blocks, plus 256M raw chunks for a remote image
  --cache-dir DIR     remote images: keep fetched chunks on disk in DIR (per bucket/key/ETag, checksummed),
                      so a remount fetches nothing twice
  --cache-dir-max SIZE  size limit of --cache-dir, whole images evicted least recently used (default 10G)
  --hydrate           remote images: once mounted, fetch the whole image in the background, below every
                      read; then nothing more is read from the network (needs --cache-dir, or an image
                      that fits in the chunk memory)
  -f, --foreground    stay in the foreground (Ctrl-C or SIGTERM unmounts)
  --allow-other       let other users see the mount (needs user_allow_other in /etc/fuse.conf)
  --nonempty          mount even if <mountpoint> has entries (hidden while mounted; refused otherwise)
  --fuse-cpu CPU      auto (default), none or a CPU number: the CPU the server's event loop and
                      its FUSE threads share (every request is a hand-off between them); auto =
                      the CPU the server starts on with libfuse, none with the kernel engine
  --fuse-engine E     kernel (default as root): FUSE spoken over /dev/fuse by this process, with
                      READDIRPLUS, reads up to 1 MiB and listed small files pushed to the page cache;
                      libfuse (default otherwise): through fuse-native and libfuse 2
  --log-file FILE     append log lines to FILE (the background process has no terminal)
  --log-level LEVEL   error, warn (default), info or debug
  --endpoint URL      S3/R2 endpoint
  --account-id ID     R2 account id (else R2_ACCOUNT_ID)
  --path-style        path-style S3 URLs
  --region REGION     signing region
Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
A background mount not ready within 120 s gives up (SQUASHFS_R2_READY_TIMEOUT_MS sets the limit).
`;

const OPTIONS = {
  'cache-size': { type: 'string' },
  'cache-dir': { type: 'string' },
  'cache-dir-max': { type: 'string' },
  hydrate: { type: 'boolean' },
  foreground: { type: 'boolean', short: 'f' },
  'allow-other': { type: 'boolean' },
  nonempty: { type: 'boolean' },
  'fuse-cpu': { type: 'string' },
  'fuse-engine': { type: 'string' },
  'log-file': { type: 'string' },
  'log-level': { type: 'string' },
  endpoint: { type: 'string' },
  'account-id': { type: 'string' },
  'path-style': { type: 'boolean' },
  region: { type: 'string' },
  // Internal: the background child reports readiness on this fd (see src/fs/daemon.ts).
  'ready-fd': { type: 'string' },
} as const;

/**
 * Longest wait for a background mount to be ready (covers slow first GETs with retries); after it the
 * server gives up and exits 1. SQUASHFS_R2_READY_TIMEOUT_MS sets it (milliseconds).
 */
function readyTimeoutMs(): number {
  const ms = Number(process.env.SQUASHFS_R2_READY_TIMEOUT_MS);
  return Number.isSafeInteger(ms) && ms > 0 ? ms : 120_000;
}

export async function run(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
  const { values, source, mountpoint, fuseCpu } = parsed;
  configureLogging({ level: values['log-level'] as LogLevel | undefined, file: values['log-file'] });
  if (values.foreground || values['ready-fd'] !== undefined) return runServer(source, mountpoint, values, fuseCpu);
  return runInBackground(argv, values);
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length !== 2) throw new Error('expected <source> <mountpoint>');
  const [source, mountpoint] = positionals as [string, string];
  if (values['cache-size'] !== undefined) parseCacheSize(values['cache-size']);
  if (values['cache-dir-max'] !== undefined) parseSize(values['cache-dir-max']);
  const fuseCpu: FuseCpu = values['fuse-cpu'] === undefined ? 'auto' : parseFuseCpu(values['fuse-cpu']);
  const engine = values['fuse-engine'];
  if (engine !== undefined && engine !== 'auto' && engine !== 'kernel' && engine !== 'libfuse') {
    throw new Error(`--fuse-engine must be auto, kernel or libfuse, not ${JSON.stringify(engine)}`);
  }
  return { values, source, mountpoint, fuseCpu };
}

type Values = ReturnType<typeof parse>['values'];

/** --cache-size: a size, and at least 1 MiB (less cannot hold one block of a large-block image). */
function parseCacheSize(text: string): number {
  const bytes = parseSize(text);
  if (bytes < 1 << 20) throw new Error(`cache size ${text} is too small (at least 1M)`);
  return bytes;
}

/**
 * Foreground: mount, serve until unmounted or signalled. With --ready-fd (started detached, see
 * src/fs/daemon.ts), report to the process waiting on that fd, and give up if not ready in time.
 */
async function runServer(source: string, mountpoint: string, values: Values, fuseCpu: FuseCpu): Promise<number> {
  const readyFd = values['ready-fd'] === undefined ? undefined : Number(values['ready-fd']);
  // The open's connections first (their handshake is a round trip), the rest once its GETs are out.
  const where = { endpoint: values.endpoint, accountId: values['account-id'], pathStyle: values['path-style'], region: values.region };
  const preconnect = await import('../../r2/preconnect.js');
  preconnect.preconnectSource(source, where, preconnect.OPEN_GET_CONNECTIONS);
  // net.connect() makes its connect() call from process.nextTick, and Node runs nextTicks only once the
  // promise continuations queued now have all run: the module loading below, ~15 ms. Let them go first.
  await new Promise((resolve) => process.nextTick(resolve));
  // Then the image's open (head and tail GETs), before the mount's other modules (~30 ms), which load
  // during its round trip. A failure is left to mount(), which reports it after the mountpoint's.
  const { isRemoteSpec, preloadSource } = await import('../../fs/open-image.js');
  let opening: Promise<RemoteObject> | undefined;
  if (isRemoteSpec(source)) {
    const early = await import('../../r2/open-source.js');
    opening = early.openRemoteEarly(source, where);
    opening.catch(() => undefined);
    await opening.then(early.letRequestsLeave, () => undefined);
    // The first readahead burst's connections, now that the open's GETs are out.
    preconnect.preconnectSource(source, where, preconnect.OPEN_CONNECTIONS - preconnect.OPEN_GET_CONNECTIONS);
  } else {
    void preloadSource(source);
  }
  const [{ mount }, { logger }, { reportReadiness }] = await Promise.all([
    import('../../fs/index.js'),
    import('../../util/log.js'),
    import('../../fs/daemon.js'),
  ]);
  logger('mount').debug(`server started ${performance.now().toFixed(1)} ms after process start`);
  // Only while mounting: once the mount is up (or has failed) and reported, the timer must not fire.
  // Left armed it killed a serving mount after two minutes, and wrote its report to whatever file
  // had been given the closed report fd's number since.
  let notReady: NodeJS.Timeout | undefined;
  if (readyFd !== undefined) {
    process.title = `squashfs-r2 mount ${resolve(mountpoint)}`;
    const timeoutMs = readyTimeoutMs();
    notReady = setTimeout(() => {
      const giveUp = () => {
        reportReadiness(readyFd, { error: `squashfs-r2 mount: not ready within ${timeoutMs / 1000} s`, exitCode: 1 });
        process.exit(1);
      };
      // The kernel engine mounts while the image opens: detach that mount before saying we failed.
      detachEarlyMount(mountpoint).then(giveUp, giveUp);
    }, timeoutMs).unref();
  }
  let handle: Awaited<ReturnType<typeof mount>> | undefined;
  // Signals are ours from before the mount: one that lands while the kernel already serves but mount()
  // has not returned must unmount cleanly, not kill the process with the default action.
  let stopping: NodeJS.Signals | undefined;
  const unmountOn = (mounted: NonNullable<typeof handle>, signal: NodeJS.Signals): void => {
    // Leaving anyway: a busy mount is detached lazily (as libfuse does on SIGTERM).
    mounted.unmount({ lazyIfBusy: true }).catch((e) => {
      process.stderr.write(`squashfs-r2 mount: unmount on ${signal}: ${describeError(e)}\n`);
      process.exit(1);
    });
  };
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`squashfs-r2 mount: ${signal} again, exiting without waiting\n`);
      process.exit(1);
    }
    stopping = signal;
    if (handle) unmountOn(handle, signal); // else: as soon as the mount is up
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, stop);
  try {
    handle = await mount(source, mountpoint, {
      cacheBytes: values['cache-size'] === undefined ? undefined : parseCacheSize(values['cache-size']),
      allowOther: values['allow-other'],
      nonEmpty: values.nonempty,
      cacheDir: values['cache-dir'] === undefined ? undefined : resolve(values['cache-dir']),
      cacheDirMaxBytes: values['cache-dir-max'] === undefined ? undefined : parseSize(values['cache-dir-max']),
      hydrate: values.hydrate,
      fuseCpu,
      fuseEngine: values['fuse-engine'] as FuseEngine | undefined,
      servesOnly: true,
      source: { ...where, opening },
    });
  } catch (e) {
    clearTimeout(notReady);
    if (readyFd !== undefined) {
      reportReadiness(readyFd, { error: `squashfs-r2 mount: ${describeError(e)}`, exitCode: 1 });
      exitSoon(1);
      return 1;
    }
    throw e;
  }
  clearTimeout(notReady);
  if (stopping) {
    if (readyFd !== undefined) {
      reportReadiness(readyFd, { error: `squashfs-r2 mount: stopped by ${stopping} while mounting`, exitCode: 1 });
    }
    unmountOn(handle, stopping);
  } else if (readyFd !== undefined) {
    reportReadiness(readyFd, { ready: true });
  }
  await handle.closed;
  exitSoon(0);
  return 0;
}

/** Detaches our own mount at `mountpoint` (lazily: a reader may be waiting on it), if there is one. */
async function detachEarlyMount(mountpoint: string): Promise<void> {
  const [{ mountEntry }, { KERNEL_FSTYPE }, { unmountFuse }] = await Promise.all([
    import('../../fs/mountpoint.js'),
    import('../../fs/kernel/device.js'),
    import('../../fs/unmount.js'),
  ]);
  if (mountEntry(mountpoint)?.fstype === KERNEL_FSTYPE) await unmountFuse(mountpoint, { lazy: true });
}

/**
 * The server's work is done (unmounted, or never mounted): leave even if a transport still holds
 * idle connections or timers open, after a moment for them to close gracefully.
 */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}

/**
 * Default: start the server detached and return once it reports the mount ready (or why not). This is
 * the node path; bin/squashfs-r2 does the same from sh without this process (one node start fewer).
 */
async function runInBackground(argv: string[], values: Values): Promise<number> {
  const { spawnServer } = await import('../../fs/daemon.js');
  const answer = await spawnServer({
    script: cliEntry(),
    args: ['mount', ...argv],
    logFile: values['log-file'],
    timeoutMs: readyTimeoutMs() + 5_000,
  });
  if ('error' in answer) {
    process.stderr.write(`${answer.error}\n`);
    return answer.exitCode;
  }
  return 0;
}

/** bin/cli.cjs relative to this compiled module (dist/src/cli/commands/mount.js). */
function cliEntry(): string {
  return fileURLToPath(new URL('../../../../bin/cli.cjs', import.meta.url));
}

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
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
  --log-file FILE     append log lines to FILE (the background process has no terminal)
  --log-level LEVEL   error, warn (default), info or debug
  --endpoint URL      S3/R2 endpoint
  --account-id ID     R2 account id (else R2_ACCOUNT_ID)
  --path-style        path-style S3 URLs
  --region REGION     signing region
Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
`;

const OPTIONS = {
  'cache-size': { type: 'string' },
  'cache-dir': { type: 'string' },
  'cache-dir-max': { type: 'string' },
  hydrate: { type: 'boolean' },
  foreground: { type: 'boolean', short: 'f' },
  'allow-other': { type: 'boolean' },
  nonempty: { type: 'boolean' },
  'log-file': { type: 'string' },
  'log-level': { type: 'string' },
  endpoint: { type: 'string' },
  'account-id': { type: 'string' },
  'path-style': { type: 'boolean' },
  region: { type: 'string' },
  // Internal: the background child reports readiness on this fd (see src/fs/daemon.ts).
  'ready-fd': { type: 'string' },
} as const;

/** The source travels to the background process in the environment, never in its argv. */
const SOURCE_ENV = 'SQUASHFS_R2_MOUNT_SOURCE';
/** Longest wait for the background process to report (covers slow first GETs with retries). */
const READY_TIMEOUT_MS = 120_000;


export async function run(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
  const { values, source, mountpoint } = parsed;
  configureLogging({ level: values['log-level'] as LogLevel | undefined, file: values['log-file'] });
  if (values.foreground) return runServer(source, mountpoint, values);
  return runInBackground(source, mountpoint, argv, values);
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const fromEnv = values['ready-fd'] !== undefined ? process.env[SOURCE_ENV] : undefined;
  if (fromEnv !== undefined) delete process.env[SOURCE_ENV];
  const expected = fromEnv !== undefined ? 1 : 2;
  if (positionals.length !== expected) throw new Error(expected === 2 ? 'expected <source> <mountpoint>' : 'expected <mountpoint>');
  const source = fromEnv ?? (positionals[0] as string);
  const mountpoint = positionals[expected - 1] as string;
  if (values['cache-size'] !== undefined) parseCacheSize(values['cache-size']);
  if (values['cache-dir-max'] !== undefined) parseSize(values['cache-dir-max']);
  return { values, source, mountpoint };
}

type Values = ReturnType<typeof parse>['values'];

/** --cache-size: a size, and at least 1 MiB (less cannot hold one block of a large-block image). */
function parseCacheSize(text: string): number {
  const bytes = parseSize(text);
  if (bytes < 1 << 20) throw new Error(`cache size ${text} is too small (at least 1M)`);
  return bytes;
}

/** Foreground: mount, serve until unmounted or signalled. With --ready-fd, report to the parent. */
async function runServer(source: string, mountpoint: string, values: Values): Promise<number> {
  const readyFd = values['ready-fd'] === undefined ? undefined : Number(values['ready-fd']);
  const { mount } = await import('../../fs/index.js');
  const { logger } = await import('../../util/log.js');
  logger('mount').debug(`server started ${(performance.now()).toFixed(1)} ms after process start`);
  const { reportReadiness } = await import('../../fs/daemon.js');
  let handle: Awaited<ReturnType<typeof mount>>;
  try {
    handle = await mount(source, mountpoint, {
      cacheBytes: values['cache-size'] === undefined ? undefined : parseCacheSize(values['cache-size']),
      allowOther: values['allow-other'],
      nonEmpty: values.nonempty,
      cacheDir: values['cache-dir'] === undefined ? undefined : resolve(values['cache-dir']),
      cacheDirMaxBytes: values['cache-dir-max'] === undefined ? undefined : parseSize(values['cache-dir-max']),
      hydrate: values.hydrate,
      source: {
        endpoint: values.endpoint,
        accountId: values['account-id'],
        pathStyle: values['path-style'],
        region: values.region,
      },
    });
  } catch (e) {
    if (readyFd !== undefined) {
      reportReadiness(readyFd, { error: describeError(e) });
      exitSoon(1);
      return 1;
    }
    throw e;
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`squashfs-r2 mount: ${signal} again, exiting without waiting\n`);
      process.exit(1);
    }
    stopping = true;
    // Leaving anyway: a busy mount is detached lazily (as libfuse does on SIGTERM).
    handle.unmount({ lazyIfBusy: true }).catch((e) => {
      process.stderr.write(`squashfs-r2 mount: unmount on ${signal}: ${describeError(e)}\n`);
      process.exit(1);
    });
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, stop);
  if (readyFd !== undefined) reportReadiness(readyFd, { ready: true });
  await handle.closed;
  exitSoon(0);
  return 0;
}

/**
 * The server's work is done (unmounted, or never mounted): leave even if a transport still holds
 * idle connections or timers open, after a moment for them to close gracefully.
 */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}

/** Default: start the server detached and return once it reports the mount ready (or why not). */
async function runInBackground(source: string, mountpoint: string, argv: string[], values: Values): Promise<number> {
  const { spawnServer, READY_FD } = await import('../../fs/daemon.js');
  const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;
  const forwarded = forwardedOptions(argv);
  const logFile = values['log-file'] === undefined ? undefined : resolve(values['log-file']);
  if (logFile) forwarded.push('--log-file', logFile);
  const answer = await spawnServer({
    script: cliEntry(),
    args: ['mount', '--foreground', '--ready-fd', String(READY_FD), ...forwarded, resolve(mountpoint)],
    env: { [SOURCE_ENV]: REMOTE.test(source) ? source : resolve(source) },
    logFile,
    timeoutMs: READY_TIMEOUT_MS,
  });
  if ('error' in answer) {
    process.stderr.write(`squashfs-r2 mount: ${answer.error}\n`);
    return 1;
  }
  return 0;
}

/** The options to hand on to the background process (all but positionals, -f and --log-file). */
function forwardedOptions(argv: string[]): string[] {
  const { tokens } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
  const out: string[] = [];
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || t.name === 'foreground' || t.name === 'log-file' || t.name === 'ready-fd') continue;
    out.push(`--${t.name}`);
    // The background process may run elsewhere (cwd /): paths travel absolute.
    if (t.value !== undefined) out.push(t.name === 'cache-dir' ? resolve(t.value) : t.value);
  }
  return out;
}

/** bin/squashfs-r2 relative to this compiled module (dist/src/cli/commands/mount.js). */
function cliEntry(): string {
  return fileURLToPath(new URL('../../../../bin/squashfs-r2', import.meta.url));
}

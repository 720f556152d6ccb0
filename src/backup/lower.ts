import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSize as parseBytes } from '../util/size.js';
import { BackupError, BackupInputError } from './layout.js';
import { isMountPoint, sleep, waitFor } from './mounts.js';

/**
 * The lower (read-only squashfs) mount of a restore runs in its own long-lived process, because
 * mount-backup is a command that returns while the restore stays usable. We start it detached
 * ourselves (rather than letting `squashfs-r2 mount` daemonize) so that we know the serving process's
 * pid for `list` and `unmount`, its output goes to a log in the restore's dir, and it can publish its
 * cache stats there (lower-daemon.ts, which uses the FUSE library directly).
 */
export interface LowerMountRequest {
  source: string;
  /** Transport flags (--endpoint, --path-style, --account-id, --region) from the bucket options. */
  flags: string[];
  mountpoint: string;
  cacheSize?: string;
  logFile: string;
  /** Where the process may publish its stats as JSON (read by `list`). */
  statsFile?: string;
  /** Persistent chunk cache directory, its size limit (e.g. "10G"), background hydration (issue 8). */
  cacheDir?: string;
  cacheDirMax?: string;
  hydrate?: boolean;
  /** A checked prefetch list (prefetch.json) to fetch right after mounting. */
  prefetchListFile?: string;
  /** Record the first reads for `seconds` and store the list as s3://bucket/key. */
  recordPrefetch?: { bucket: string; key: string; seconds: number };
}

/** Builds the argv of the process that serves the lower mount in the foreground. */
/** What lower-daemon.ts prints before its error, so the cause can be told from other log lines. */
export const FAILURE_PREFIX = 'lower mount failed: ';

export type LowerCommand = (req: LowerMountRequest) => string[];

/**
 * The compiled lower-daemon.js beside this module (dist/src/backup), or in dist/ when this module runs
 * from the TypeScript sources (tests): the daemon is a plain node process and needs the build.
 */
function daemonScript(): string {
  const here = fileURLToPath(import.meta.url);
  const candidates = here.endsWith('.js')
    ? [join(dirname(here), 'lower-daemon.js')]
    : [join(dirname(here), '..', '..', 'dist', 'src', 'backup', 'lower-daemon.js')];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new BackupError(`lower mount daemon not built (${candidates[0]} missing): run "npm run build"`);
  return found;
}

/** A size flag of mount-backup ("256M", "1G"); a bad one is an input error (exit 2). */
export function parseSize(text: string): number {
  try {
    return parseBytes(text);
  } catch (e) {
    throw new BackupInputError((e as Error).message);
  }
}

/** Our own FUSE mount (src/fs) in a lower-daemon process; it publishes stats to `statsFile`. */
export const ourMountCommand: LowerCommand = (req) => {
  const argv = [process.execPath, daemonScript(), '--source', req.source, '--mountpoint', req.mountpoint];
  if (req.statsFile) argv.push('--stats', req.statsFile);
  if (req.cacheSize) argv.push('--cache-bytes', String(parseSize(req.cacheSize)));
  if (req.cacheDir) argv.push('--cache-dir', req.cacheDir);
  if (req.cacheDirMax) argv.push('--cache-dir-max-bytes', String(parseSize(req.cacheDirMax)));
  if (req.hydrate) argv.push('--hydrate');
  if (req.prefetchListFile) argv.push('--prefetch-list', req.prefetchListFile);
  if (req.recordPrefetch) {
    const r = req.recordPrefetch;
    argv.push('--record-bucket', r.bucket, '--record-key', r.key, '--record-seconds', String(r.seconds));
  }
  argv.push(...req.flags);
  return argv;
};

/** The process's own failure line when it wrote one, else the last lines of its log. */
function failureFrom(file: string, lines = 3): string {
  try {
    const all = readFileSync(file, 'utf8').trim().split('\n');
    const own = all.filter((l) => l.startsWith(FAILURE_PREFIX)).pop();
    return own ? own.slice(FAILURE_PREFIX.length) : all.slice(-lines).join(' / ');
  } catch {
    return '';
  }
}

/** Starts the lower mount process and resolves with its pid once `mountpoint` is mounted. */
export async function startLowerMount(
  req: LowerMountRequest,
  command: LowerCommand,
  timeoutMs = 30_000,
): Promise<number> {
  const argv = command(req);
  const log = openSync(req.logFile, 'a', 0o600);
  let exited: string | undefined;
  let pid: number | undefined;
  try {
    // The SDK's Node-version notice would otherwise be the first thing in every restore's log.
    const env = { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...process.env };
    const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', log, log], env });
    pid = child.pid;
    child.on('error', (e) => {
      exited = e.message;
    });
    child.on('exit', (code, signal) => {
      exited = signal ? `killed by ${signal}` : `exited with code ${code}`;
    });
    child.unref();
  } finally {
    closeSync(log);
  }
  const ready = await waitFor(() => exited !== undefined || isMountPoint(req.mountpoint), timeoutMs);
  if (ready && exited === undefined && pid !== undefined) return pid;
  if (exited === undefined && pid !== undefined) await stopProcess(pid, req.mountpoint);
  const why = failureFrom(req.logFile) || exited || 'no output';
  throw new BackupError(
    `lower mount of ${req.source} failed: ${ready ? why : `not ready after ${timeoutMs / 1000} s (${why})`}`,
  );
}

/** True when `pid` is alive and its command line names `mountpoint` (so a reused pid is never signalled). */
export function isOurProcess(pid: number, mountpoint: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(mountpoint);
  } catch {
    return false;
  }
}

/**
 * SIGTERM, then SIGKILL after a grace period; only if the pid still is our lower process. With
 * `detached` (its mount was lazily unmounted because a file was still open through it) the process
 * is left alone: it keeps serving that file and exits by itself when the connection ends.
 */
export async function stopProcess(
  pid: number,
  mountpoint: string,
  options: { graceMs?: number; detached?: boolean } = {},
): Promise<void> {
  if (options.detached || !isOurProcess(pid, mountpoint)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitFor(() => !isOurProcess(pid, mountpoint), options.graceMs ?? 5_000)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitFor(() => !isOurProcess(pid, mountpoint), 2_000);
  await sleep(0);
}

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FuseCpu } from '../fs/affinity.js';
import { awaitReadiness, encodeArgs, SERVER_NODE_FLAGS, serverEnvironment } from '../fs/daemon.js';
import { parseSize as parseBytes } from '../util/size.js';
import { BackupError, BackupInputError } from './layout.js';
import { sleep, waitFor } from './mounts.js';

/**
 * The lower (read-only squashfs) mount of a restore runs in its own long-lived process, because
 * mount-backup is a command that returns while the restore stays usable. We start it detached
 * ourselves (rather than letting `squashfs-r2 mount` daemonize) so that we know the serving process's
 * pid for `list` and `unmount`, its output goes to a log in the restore's dir, and it can publish its
 * cache stats there (lower-daemon.ts, which uses the FUSE library directly).
 *
 * It is started before mount-backup has read meta.json: its node start and the archive's first GETs
 * overlap that round trip. It mounts only when told to go (on its stdin, once the backup checks out),
 * and reports on fd 3 as a background mount does (src/fs/daemon.ts); told nothing, it exits.
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
  /** Where it leaves the archive root's xattrs, if it has any, before reporting ready (root-attrs.ts). */
  rootXattrsFile?: string;
  /** Persistent chunk cache directory, its size limit (e.g. "10G"), background hydration (issue 8). */
  cacheDir?: string;
  cacheDirMax?: string;
  hydrate?: boolean;
  /** The CPU of its event loop and FUSE threads (fs/affinity.ts); unset: auto. */
  fuseCpu?: FuseCpu;
  /** Record the first reads for `seconds` and store the list as s3://bucket/key. */
  recordPrefetch?: { bucket: string; key: string; seconds: number };
}

/** What mount-backup learnt after starting the process, handed over with the go. */
export interface LowerGo {
  /** A checked prefetch list (prefetch.json) to fetch right after mounting. */
  prefetchListFile?: string;
}

/** What lower-daemon.ts prints before its error, so the cause can be told from other log lines. */
export const FAILURE_PREFIX = 'lower mount failed: ';

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

/** The daemon's argv: nothing secret (credentials come from the environment it inherits). */
function lowerArgv(req: LowerMountRequest): string[] {
  const argv = [daemonScript(), '--source', req.source, '--mountpoint', req.mountpoint];
  if (req.statsFile) argv.push('--stats', req.statsFile);
  if (req.rootXattrsFile) argv.push('--root-xattrs', req.rootXattrsFile);
  if (req.cacheSize) argv.push('--cache-bytes', String(parseSize(req.cacheSize)));
  if (req.cacheDir) argv.push('--cache-dir', req.cacheDir);
  if (req.cacheDirMax) argv.push('--cache-dir-max-bytes', String(parseSize(req.cacheDirMax)));
  if (req.hydrate) argv.push('--hydrate');
  if (req.fuseCpu !== undefined) argv.push('--fuse-cpu', String(req.fuseCpu));
  if (req.recordPrefetch) {
    const r = req.recordPrefetch;
    argv.push('--record-bucket', r.bucket, '--record-key', r.key, '--record-seconds', String(r.seconds));
  }
  argv.push(...req.flags);
  return argv;
}

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

/** A lower mount process, started and opening the archive, waiting for go() or abort(). */
export interface LowerProcess {
  readonly pid: number;
  /** Mounts; resolves once the mount serves. On failure the process is stopped and a BackupError thrown. */
  go(what?: LowerGo, timeoutMs?: number): Promise<void>;
  /** Not needed after all: the process exits without mounting (stopped if it does not). */
  abort(): Promise<void>;
}

/** Longest life of a process that is never told to go or abort (mount-backup itself died). */
const UNTOLD_LIMIT_MS = 10 * 60_000;

export function startLowerProcess(req: LowerMountRequest): LowerProcess {
  const argv = lowerArgv(req);
  const log = openSync(req.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    // The SDK's Node-version notice would otherwise be the first thing in every restore's log.
    const env = serverEnvironment([req.source, ...req.flags], {
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...process.env,
    });
    child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...argv], {
      detached: true,
      stdio: ['pipe', log, log, 'pipe'],
      env,
    });
  } finally {
    closeSync(log);
  }
  child.stdin?.on('error', () => undefined);
  const report = awaitReadiness(child, UNTOLD_LIMIT_MS);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const pid = child.pid ?? -1;
  const settled = (): void => {
    child.stdin?.destroy();
    child.unref();
  };
  return {
    pid,
    async go(what = {}, timeoutMs = 30_000) {
      const extra = ['--go', ...(what.prefetchListFile ? ['--prefetch-list', what.prefetchListFile] : [])];
      child.stdin?.end(encodeArgs(extra));
      let timer: NodeJS.Timeout | undefined;
      const answer = await Promise.race([
        report,
        new Promise<undefined>((done) => {
          timer = setTimeout(() => done(undefined), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      settled();
      if (answer && 'ready' in answer) return;
      if (!exited) await stopProcess(pid, req.mountpoint);
      const why = failureFrom(req.logFile) || answer?.error || 'no output';
      throw new BackupError(
        `lower mount of ${req.source} failed: ${answer ? why : `not ready after ${timeoutMs / 1000} s (${why})`}`,
      );
    },
    async abort() {
      child.stdin?.end();
      await waitFor(() => exited, 3_000);
      settled();
      if (!exited) await stopProcess(pid, req.mountpoint, { graceMs: 1_000 });
    },
  };
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

import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackupError } from './layout.js';
import { isMountPoint, sleep, waitFor } from './mounts.js';

/**
 * The lower (read-only squashfs) mount of a restore runs in its own long-lived process, because
 * mount-backup is a command that returns while the restore stays usable. We start our own
 * `squashfs-r2 mount -f` detached (rather than letting `mount` daemonize itself) so that we know the
 * serving process's pid for `list` and `unmount`, and its output goes to a log in the restore's dir.
 */
export interface LowerMountRequest {
  source: string;
  /** Transport flags (--endpoint, --path-style, --account-id, --region) from the bucket options. */
  flags: string[];
  mountpoint: string;
  cacheSize?: string;
  logFile: string;
}

/** Builds the argv of the process that serves the lower mount in the foreground. */
export type LowerCommand = (req: LowerMountRequest) => string[];

/** Finds bin/squashfs-r2 from this module, in the source tree (src/backup) or the build (dist/src/backup). */
function findCliBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'bin', 'squashfs-r2');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    dir = dirname(dir);
  }
  throw new BackupError('cannot find bin/squashfs-r2 next to this installation');
}

export const ourMountCommand: LowerCommand = (req) => {
  const argv = [process.execPath, findCliBin(), 'mount', '-f', ...req.flags];
  if (req.cacheSize) argv.push('--cache-size', req.cacheSize);
  argv.push(req.source, req.mountpoint);
  return argv;
};

function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' / ');
  } catch {
    return '';
  }
}

/** Starts the lower mount process and resolves with its pid once `mountpoint` is mounted. */
export async function startLowerMount(req: LowerMountRequest, command: LowerCommand, timeoutMs = 30_000): Promise<number> {
  const argv = command(req);
  const log = openSync(req.logFile, 'a', 0o600);
  let exited: string | undefined;
  let pid: number | undefined;
  try {
    const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', log, log], env: process.env });
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
  const why = tail(req.logFile) || exited || 'no output';
  throw new BackupError(`lower mount of ${req.source} failed: ${ready ? why : `not ready after ${timeoutMs / 1000} s (${why})`}`);
}

/** True when `pid` is alive and its command line names `mountpoint` (so a reused pid is never signalled). */
export function isOurProcess(pid: number, mountpoint: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(mountpoint);
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after a grace period; only if the pid still is our lower process. */
export async function stopProcess(pid: number, mountpoint: string, graceMs = 5_000): Promise<void> {
  if (!isOurProcess(pid, mountpoint)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitFor(() => !isOurProcess(pid, mountpoint), graceMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitFor(() => !isOurProcess(pid, mountpoint), 2_000);
  await sleep(0);
}

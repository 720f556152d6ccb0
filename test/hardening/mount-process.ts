/**
 * A `squashfs-r2 mount --foreground` process started by a test (from the private build), so the test
 * knows its pid: it can check it stays alive, read its peak memory, look at its command line, and
 * unmount it the way a user would (fusermount -u) and see it exit cleanly.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
/** How long a mount process may take to exit after fusermount -u. */
const UNMOUNT_WAIT_MS = 15_000;

export interface MountProcess {
  pid: number;
  mountpoint: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  alive(): boolean;
  exitCode(): number | null;
  /** Peak resident set size (VmHWM) in bytes. */
  peakRss(): number;
  /** Unmounts with fusermount -u and waits for the process to exit; returns its exit code. */
  unmount(): Promise<number | null>;
}

export function mountedHere(mountpoint: string): string | undefined {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mountpoint);
}

export function vmHwm(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Starts the mount and resolves once the mountpoint is mounted; rejects with the output if the process exits first. */
export async function startMount(
  cli: string,
  source: string,
  mountpoint: string,
  flags: string[] = [],
  env: Record<string, string | undefined> = process.env,
  timeoutMs = 60_000,
): Promise<MountProcess> {
  const child = spawn(cli, ['mount', '--foreground', ...flags, source, mountpoint], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exit: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (code, signal) => {
      exit = code ?? (signal ? -1 : null);
      if (signal) out += `\n[test] the process was killed by ${signal}\n`; // -1 says no more than that
      resolve();
    }),
  );
  const handle: MountProcess = {
    pid: child.pid!,
    mountpoint,
    child,
    output: () => out,
    alive: () => exit === undefined,
    exitCode: () => exit ?? null,
    peakRss: () => vmHwm(child.pid!),
    async unmount() {
      if (exit !== undefined) return exit;
      const fusermount = await execFileP('fusermount', ['-u', mountpoint]).then(
        () => 'ok',
        (e: { stderr?: string }) => `failed: ${e.stderr?.trim()}`,
      );
      const done = await Promise.race([exited.then(() => true), sleep(UNMOUNT_WAIT_MS).then(() => false)]);
      if (!done) {
        out += `\n[test] still running ${UNMOUNT_WAIT_MS} ms after fusermount -u (${fusermount}; mounted: ${mountedHere(mountpoint) !== undefined}): killed\n`;
        child.kill('SIGKILL');
        await exited;
        await execFileP('fusermount', ['-uz', mountpoint]).catch(() => undefined);
      }
      return exit ?? null;
    },
  };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exit !== undefined) throw new Error(`mount exited (${exit}) before serving: ${out.trim()}`);
    if (mountedHere(mountpoint)) {
      // The kernel engine mounts while the image opens: an image it then refuses makes this stat fail
      // (ENOTCONN) as the process exits with the reason, which is what the caller wants to see.
      await stat(mountpoint).catch(async (e: unknown) => {
        await Promise.race([exited, sleep(5_000)]);
        if (exit !== undefined) throw new Error(`mount exited (${exit}) before serving: ${out.trim()}`);
        throw e;
      });
      return handle;
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  await execFileP('fusermount', ['-uz', mountpoint]).catch(() => undefined);
  throw new Error(`mount not ready after ${timeoutMs} ms: ${out.trim()}`);
}

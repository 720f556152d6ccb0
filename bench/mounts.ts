import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Process and mount plumbing shared by the peers: is it mounted, who serves it, how much memory. */

/** A mountpoint is mounted once its device differs from its parent's. */
export async function isMounted(path: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([stat(path), stat(dirname(path))]);
    return a.dev !== b.dev;
  } catch {
    return false;
  }
}

export async function waitMounted(path: string, timeoutMs: number, failed?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await isMounted(path)) return;
    const why = failed?.();
    if (why) throw new Error(`mount on ${path} failed: ${why}`);
    if (Date.now() > deadline) throw new Error(`${path} not mounted after ${timeoutMs} ms`);
    await sleep(2);
  }
}

/** Runs a command to completion; rejects with its stderr on a non-zero exit. */
export async function exec(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { env: env ?? process.env, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args[0] ?? ''}: ${(err.stderr || err.message).trim().slice(0, 500)}`);
  }
}

/**
 * Starts a mount command and resolves once the mountpoint is mounted and, for commands that
 * daemonize, once the command has returned (either order; a foreground daemon never returns).
 */
export async function startMountCommand(
  cmd: string,
  args: string[],
  mountpoint: string,
  options: { env?: NodeJS.ProcessEnv; foreground?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  const child = spawn(cmd, args, {
    env: options.env ?? process.env,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  let exit: number | null | undefined;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.on('exit', (code) => {
    exit = code ?? -1;
  });
  child.on('error', (e) => {
    stderr += e.message;
    exit = -1;
  });
  child.unref();
  const failed = () => (exit !== undefined && exit !== 0 ? `exit ${exit}: ${stderr.trim().slice(0, 500)}` : undefined);
  await waitMounted(mountpoint, options.timeoutMs ?? 120_000, failed);
  if (!options.foreground) {
    while (exit === undefined) await sleep(2);
    if (exit !== 0) throw new Error(`${cmd}: ${failed()}`);
  }
}

/**
 * Pids of processes with `mountpoint` as one of their arguments (the FUSE daemon serving it), or titled
 * "squashfs-r2 mount <mountpoint>" (our background server).
 */
export async function pidsServing(mountpoint: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const args = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      const named =
        args.includes(mountpoint) || args.includes(`${mountpoint}/`) || args[0] === `squashfs-r2 mount ${mountpoint}`;
      if (named) pids.push(Number(name));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Peak resident set (VmHWM) in bytes, or 0 if the process is gone. */
export async function peakRss(pid: number): Promise<number> {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU time (user + system) a process has used so far, in seconds; 0 if it is gone. */
export async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const CLOCK_TICKS = 100; // USER_HZ on Linux
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Unmounts (lazily if it stays busy) and waits for the serving processes to exit. */
export async function unmount(mountpoint: string, pids: number[]): Promise<void> {
  if (await isMounted(mountpoint)) {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await exec('fusermount', ['-u', mountpoint]);
        break;
      } catch {
        await sleep(200);
      }
    }
    if (await isMounted(mountpoint)) await exec('fusermount', ['-uz', mountpoint]).catch(() => undefined);
  }
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(20);
  // Only the daemons this run started, by pid.
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGTERM');
}

/** Empties the page cache so every cold run starts from the same place (needs root). */
export async function dropCaches(): Promise<boolean> {
  try {
    await exec('sync', []);
    await exec('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']);
    return true;
  } catch {
    return false;
  }
}

import { spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * Backgrounding a mount the way squashfuse and s3fs do, with one extra process: the command
 * starts itself again, detached, in the foreground mode, and waits on a pipe (the child's fd 3)
 * for one line: `{"ready":true}` once the kernel serves the mount, or `{"error":"..."}`. The
 * parent then exits 0 or prints the error and exits non-zero; the child keeps serving.
 */
export const READY_FD = 3;

export type Readiness = { ready: true } | { error: string };

export interface SpawnServerOptions {
  /** Node script (the CLI entry) and its arguments for the child. */
  script: string;
  args: string[];
  /** Added to the inherited environment (how the source spec travels, never in argv). */
  env: Record<string, string>;
  /** Where the child's stderr goes once detached (its log file), else nowhere. */
  logFile?: string;
  /** Give up (and kill the child) when it reports nothing for this long. */
  timeoutMs: number;
}

/** Starts the detached server and resolves with what it reported (an error if it died first). */
export function spawnServer(options: SpawnServerOptions): Promise<Readiness & { pid?: number }> {
  const stderr = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
  const child = spawn(process.execPath, [options.script, ...options.args], {
    detached: true,
    stdio: ['ignore', 'ignore', stderr, 'pipe'],
    env: { ...process.env, ...options.env },
  });
  if (typeof stderr === 'number') closeSync(stderr);
  const pipe = child.stdio[READY_FD] as import('node:stream').Readable | null;
  return new Promise((resolve) => {
    let text = '';
    let settled = false;
    const settle = (answer: Readiness): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      pipe?.removeAllListeners();
      pipe?.destroy();
      child.removeAllListeners('exit');
      child.unref();
      resolve({ ...answer, pid: child.pid });
    };
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      settle({ error: `the mount did not become ready within ${options.timeoutMs / 1000} s` });
    }, options.timeoutMs);
    pipe?.setEncoding('utf8');
    pipe?.on('data', (chunk: string) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline >= 0) settle(parseReadiness(text.slice(0, newline)));
    });
    pipe?.on('error', () => undefined);
    child.on('error', (e) => settle({ error: `cannot start the mount process: ${e.message}` }));
    child.on('exit', (code, signal) => {
      settle({ error: `the mount process exited before the mount was ready (${signal ?? `status ${code}`})` });
    });
  });
}

function parseReadiness(line: string): Readiness {
  try {
    const parsed = JSON.parse(line) as Partial<{ ready: boolean; error: string }>;
    if (parsed.ready === true) return { ready: true };
    if (typeof parsed.error === 'string') return { error: parsed.error };
  } catch {
    // fall through
  }
  return { error: `unexpected message from the mount process: ${line.slice(0, 200)}` };
}

/** The child's side: reports once and closes the pipe (a second report is ignored). */
export function reportReadiness(fd: number, answer: Readiness): void {
  try {
    writeSync(fd, `${JSON.stringify(answer)}\n`);
    closeSync(fd);
  } catch {
    // The parent is gone (killed or timed out): nothing left to tell.
  }
}

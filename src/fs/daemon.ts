import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { withoutUnusedCaBundle } from './tls-free.js';

/**
 * Backgrounding a mount the way squashfuse and s3fs do. The serving process is started detached
 * (its own session) with its arguments on stdin, so nothing given on the command line (a source URL
 * may carry a signature) sits in its argv for as long as it serves. It reports once on fd 3 and closes
 * it: `ready`, or `exit <code>` and a message. The starter prints the message and exits with the code;
 * the server keeps serving.
 *
 * bin/squashfs-r2 speaks this protocol in sh (one node start instead of two); spawnServer below is the
 * same thing from node (a library caller, or no setsid), and mount-backup's lower mount reports the same way.
 */
export const READY_FD = 3;
/**
 * argv[2] of a server started this way (`bin/cli.cjs --serve-detached <blanks>`): its arguments come on
 * stdin; the blanks only make room for its process title.
 */
export const DETACHED_FLAG = '--serve-detached';
/**
 * Node flags of every process that serves a mount (bin/squashfs-r2 repeats them for the processes it
 * starts; a test checks that it does). A semi-space of 1 MiB instead of up to 16: the young
 * generation is then collected every few MiB of allocation, which frees the socket buffers a GET
 * leaves behind while they are still young. Measured with test/hardening/memory.test.ts (4 GiB read
 * through a 64 MiB cache): peak RSS 176 MiB without it, 152 MiB with it, no slower.
 * An interrupt budget 7x V8's default: a function is optimized only after 7x as much of its bytecode
 * ran. A fresh mount's first walk runs many functions a few thousand times each; optimizing them all
 * at once kept V8's compiler threads busy on the cores the FUSE threads and the reader need (first
 * walk of a 1,500-file tree: 0.76 s median with the default budget, 0.63 s with this one). What stays
 * hot is optimized all the same, a little later.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--interrupt-budget=500000'];

/**
 * glibc malloc settings of every process that serves a mount (GLIBC_TUNABLES; bin/squashfs-r2 sets
 * the same), unless the caller set GLIBC_TUNABLES itself. Blocks under 4 MiB come from the heap, not
 * from an mmap each, and the heap asks for transparent huge pages (used where THP is "always" or
 * "madvise"; elsewhere nothing changes). Why: each first write to a 4 KiB page is a page fault, which
 * on the VMs here costs ~10 µs through the hypervisor, and the mount's buffers (chunks, decoded
 * blocks, socket reads) are written fresh until the caches have filled. 64 MiB of new 128 KiB
 * buffers took 180-200 ms to fill, 13-20 ms with these settings; a W1P restore's server used 3.25 s
 * of CPU instead of 4.03 s. Memory: the 4 GiB stream through a 64 MiB cache peaks at VmHWM 146-150 MiB,
 * as before. A 16 MiB trim threshold as well halved the big files' page faults again, but that test
 * then crept from 130 to 158-173 MiB over its passes: not taken.
 */
export const SERVER_MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304';

/** The environment of a server started with `args`, made from `env` (which is left as it is). */
export function serverEnvironment(args: readonly string[], env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const base = withoutUnusedCaBundle(args, env);
  return base.GLIBC_TUNABLES === undefined ? { ...base, GLIBC_TUNABLES: SERVER_MALLOC_TUNABLES } : base;
}

export type Readiness = { ready: true } | { error: string; exitCode: number };

/** The report's bytes (bin/squashfs-r2 parses exactly this). */
export function formatReadiness(answer: Readiness): string {
  return 'ready' in answer ? 'ready\n' : `exit ${answer.exitCode}\n${answer.error}\n`;
}

/** Undefined when `text` is not a report (the server died before writing one). */
export function parseReadiness(text: string): Readiness | undefined {
  const newline = text.indexOf('\n');
  const first = newline < 0 ? text : text.slice(0, newline);
  if (first === 'ready') return { ready: true };
  const exit = /^exit (\d{1,3})$/.exec(first);
  if (!exit) return undefined;
  const message = newline < 0 ? '' : text.slice(newline + 1).trimEnd();
  return { error: message || 'the mount failed', exitCode: Number(exit[1]) || 1 };
}

/** The server's side: reports once and closes the fd (later reports are ignored). */
export function reportReadiness(fd: number, answer: Readiness): void {
  try {
    writeSync(fd, formatReadiness(answer));
    closeSync(fd);
  } catch {
    // The starter is gone (killed, or it stopped waiting): nothing left to tell.
  }
}

/** Arguments on stdin: each one NUL-terminated (an argument cannot contain NUL). */
export function encodeArgs(args: readonly string[]): string {
  return args.map((a) => `${a}\0`).join('');
}

export function decodeArgs(text: string): string[] {
  if (text === '') return [];
  if (!text.endsWith('\0')) throw new Error('truncated argument list on stdin');
  return text.slice(0, -1).split('\0');
}

/** The detached server's arguments: all of stdin (the starter closes it after writing them). */
export function readDetachedArgs(): string[] {
  return decodeArgs(readFileSync(0, 'utf8'));
}

/**
 * Waits for the child's report on its fd-3 pipe: resolves at end of file with the report, or with why
 * there is none (it exited first, or said nothing within `timeoutMs`, and was then sent SIGTERM).
 */
export function awaitReadiness(child: ChildProcess, timeoutMs: number): Promise<Readiness> {
  const pipe = child.stdio[READY_FD] as Readable | null;
  return new Promise((resolve) => {
    let text = '';
    let settled = false;
    let exitStatus: string | undefined;
    let eof = false;
    const settle = (answer: Readiness): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      pipe?.removeAllListeners();
      pipe?.destroy();
      child.removeListener('exit', onExit);
      resolve(answer);
    };
    const conclude = (): void => {
      const parsed = parseReadiness(text);
      if (parsed) settle(parsed);
      // No report: say why once the exit status is known (end of file can come first).
      else if (exitStatus !== undefined) settle({ error: `the mount process ${exitStatus} before the mount was ready`, exitCode: 1 });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      exitStatus = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      if (eof || !pipe) conclude();
    };
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      settle({ error: `the mount did not become ready within ${timeoutMs / 1000} s`, exitCode: 1 });
    }, timeoutMs);
    child.on('exit', onExit);
    child.on('error', (e) => settle({ error: `cannot start the mount process: ${e.message}`, exitCode: 1 }));
    pipe?.setEncoding('utf8');
    pipe?.on('data', (chunk: string) => {
      text += chunk;
    });
    pipe?.on('error', () => undefined);
    pipe?.on('end', () => {
      eof = true;
      conclude();
    });
  });
}

export interface SpawnServerOptions {
  /** The CLI's node entry (bin/cli.cjs); it is run as `node <script> --serve-detached`. */
  script: string;
  /** The command line it serves (e.g. ["mount", source, mountpoint, ...]), sent on its stdin. */
  args: string[];
  /** Where the child's stderr goes once detached (its log file), else nowhere. */
  logFile?: string;
  /** Give up (and stop the child) when it reports nothing for this long. */
  timeoutMs: number;
}

/** Starts the detached server and resolves with its report (or why there is none). */
export async function spawnServer(options: SpawnServerOptions): Promise<Readiness & { pid?: number }> {
  // Here, not with the module: a server imports this module too, and node:child_process took ~5 ms
  // of its start, before its first GET.
  const { spawn } = await import('node:child_process');
  const stderr = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
  // Room for the server's process title (see bin/squashfs-r2): blanks as long as its command line.
  const room = ' '.repeat(options.args.join(' ').length);
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, options.script, DETACHED_FLAG, room], {
    detached: true,
    stdio: ['pipe', 'ignore', stderr, 'pipe'],
    env: serverEnvironment(options.args, process.env),
  });
  if (typeof stderr === 'number') closeSync(stderr);
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(encodeArgs(options.args));
  const answer = await awaitReadiness(child, options.timeoutMs);
  child.unref();
  return { ...answer, pid: child.pid };
}

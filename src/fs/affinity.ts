import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { describeError, logger } from '../util/log.js';

/**
 * Every FUSE request fuse-native serves goes from a libfuse thread to Node's event loop and back
 * (an eventfd wake-up one way, a futex wake-up the other). When the two threads sit on different
 * CPUs each hand-off wakes a CPU from idle, which on a virtual machine is an exit to the hypervisor:
 * measured on a 2-vCPU VM, a first walk of 1,500 small files took 0.61-0.68 s with the event loop
 * and libfuse's threads on one CPU against 0.69-0.93 s left to the scheduler, and reading 1 GiB
 * through the mount took 10% less CPU.
 *
 * So a serving process may pin its main thread to one CPU before the FUSE session starts: libfuse's
 * threads, created from it, inherit that CPU. Threads Node made at start-up (V8's compiler and GC
 * helpers, libuv's thread pool) keep every CPU. Node has no call for thread affinity, so util-linux's
 * taskset does it; without taskset, or on one CPU, nothing is pinned.
 */

const log = logger('mount');

/** 'auto': the CPU the process runs on when asked; a number: that CPU; 'none': leave it to the scheduler. */
export type FuseCpu = 'auto' | 'none' | number;

/** Parses `--fuse-cpu`: auto, none or a CPU number. */
export function parseFuseCpu(text: string): FuseCpu {
  if (text === 'auto' || text === 'none') return text;
  if (/^\d{1,4}$/.test(text)) return Number(text);
  throw new Error(`--fuse-cpu: expected auto, none or a CPU number, not "${text}"`);
}

/** The CPU the calling thread runs on now (field 39 of /proc/thread-self/stat), if Linux says. */
export function currentCpu(): number | undefined {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const cpu = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[36]);
    return Number.isInteger(cpu) && cpu >= 0 ? cpu : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Pins this process's main thread (whose thread id is the pid) to one CPU, so that threads it creates
 * from now on start there too. Resolves with the CPU, or undefined when nothing was pinned; never
 * rejects (the mount serves either way).
 */
export async function pinMainThread(choice: FuseCpu): Promise<number | undefined> {
  if (choice === 'none' || availableParallelism() < 2) return undefined;
  const cpu = choice === 'auto' ? currentCpu() : choice;
  if (cpu === undefined) return undefined;
  // Loaded here, not with the module: the CLI's mount command imports this module for parseFuseCpu,
  // and node:child_process took ~5 ms of every mount server's start, before its first GET.
  const { execFile } = await import('node:child_process');
  return new Promise((done) => {
    execFile('taskset', ['-p', '-c', String(cpu), String(process.pid)], { timeout: 5_000 }, (error, _stdout, stderr) => {
      if (error) {
        const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'taskset not found' : stderr.trim() || describeError(error);
        (choice === 'auto' ? log.debug : log.warn)(`FUSE threads not pinned to CPU ${cpu}: ${why}`);
        done(undefined);
        return;
      }
      log.debug(`event loop and FUSE threads pinned to CPU ${cpu}`);
      done(cpu);
    });
  });
}

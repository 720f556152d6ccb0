import { resolve } from 'node:path';
import { MountError, isMountpoint } from './mountpoint.js';

export interface UnmountOptions {
  /** Detach even when busy (`fusermount -uz`): open files keep working until closed. */
  lazy?: boolean;
  /** When the plain unmount fails because the mount is busy, fall back to a lazy one. */
  lazyIfBusy?: boolean;
  /**
   * Times a busy plain unmount is tried again (50, 100, ... ms apart) before giving up or going lazy:
   * a file closed just before still holds the mount for a moment. Default 0.
   */
  busyRetries?: number;
}

export interface UnmountResult {
  /** 'lazy' when the mount was detached while still in use. */
  mode: 'normal' | 'lazy';
}

/**
 * Unmounts a FUSE mount with fusermount (which also works unprivileged for the user who mounted).
 * A busy mount is an error that says which files hold it unless a lazy unmount was asked for.
 */
export async function unmountFuse(mountpoint: string, options: UnmountOptions = {}): Promise<UnmountResult> {
  const abs = resolve(mountpoint);
  if (!isMountpoint(abs)) throw new MountError(`${abs} is not mounted`);
  if (options.lazy) {
    await fusermount(['-u', '-z', abs]);
    return { mode: 'lazy' };
  }
  try {
    await plainUnmount(abs, options.busyRetries ?? 0);
    return { mode: 'normal' };
  } catch (e) {
    const busy = /busy/i.test((e as Error).message);
    if (busy && options.lazyIfBusy) {
      await fusermount(['-u', '-z', abs]);
      return { mode: 'lazy' };
    }
    if (busy) {
      throw new MountError(
        `${abs} is busy (a process has a file open or its working directory inside): close it, or unmount lazily with --lazy (the mount disappears now and is released when the last file closes)`,
        { cause: e },
      );
    }
    throw e;
  }
}

async function plainUnmount(abs: string, busyRetries: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await fusermount(['-u', abs]);
      return;
    } catch (e) {
      if (!isMountpoint(abs)) return; // someone else unmounted it meanwhile
      if (attempt >= busyRetries || !/busy/i.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
    }
  }
}

const FUSERMOUNT_CANDIDATES = ['fusermount3', 'fusermount'];

async function fusermount(args: string[]): Promise<void> {
  // node:child_process loads here, not at a mount server's start (~5 ms before its first GET).
  const { execFile } = await import('node:child_process');
  return new Promise((done, fail) => {
    const attempt = (i: number): void => {
      const bin = FUSERMOUNT_CANDIDATES[i] as string;
      execFile(bin, args, { timeout: 30_000 }, (error, _stdout, stderr) => {
        if (!error) return done();
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          if (i + 1 < FUSERMOUNT_CANDIDATES.length) return attempt(i + 1);
          return fail(new MountError('neither fusermount3 nor fusermount found: install fuse3', { cause: error }));
        }
        fail(new MountError(`${bin} ${args.join(' ')} failed: ${stderr.trim() || error.message}`, { cause: error }));
      });
    };
    attempt(0);
  });
}

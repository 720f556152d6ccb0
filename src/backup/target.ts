import type { Stats } from 'node:fs';
import { lstat, mkdir, realpath, rmdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { BackupInputError } from './layout.js';

/**
 * The directory a backup is restored onto. Like the sandbox SDK's restore, a missing one is created
 * (with its parents, 0755 like `mkdir -p`), but only once the backup checked out: inspectTarget only
 * reads, createTarget makes what is missing, and removeCreated takes back exactly what it made.
 */
export interface TargetPlan {
  /** Absolute, as given (not resolved through symlinks): how restores and unmounts name it. */
  dir: string;
  /** The dirs that do not exist yet, outermost first (empty when `dir` exists). */
  missing: string[];
}

function describeKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isSymbolicLink()) return 'a symlink to a missing path';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isFIFO()) return 'a fifo';
  return 'a socket';
}

/** Checks `dir` without changing anything: a directory, or missing below an existing directory. */
export async function inspectTarget(dir: string): Promise<TargetPlan> {
  const abs = resolve(dir);
  const missing: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    const st = await stat(p).catch((e: NodeJS.ErrnoException) => {
      // ENOTDIR: a parent is not a dir; going up finds and names it.
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
      throw new BackupInputError(`cannot use ${abs} as target dir: ${e.code} on ${p}`);
    });
    if (st?.isDirectory()) return { dir: abs, missing: missing.reverse() };
    if (st) {
      const what = p === abs ? `target ${abs}` : `${p} (a parent of target ${abs})`;
      throw new BackupInputError(`${what} is ${describeKind(st)}, not a directory`);
    }
    // stat says missing: a dangling symlink is a path mkdir cannot create either.
    const link = await lstat(p).catch(() => undefined);
    if (link) {
      const what = p === abs ? `target ${abs}` : `${p} (a parent of target ${abs})`;
      throw new BackupInputError(`${what} is ${describeKind(link)}, not a directory`);
    }
    missing.push(p);
    if (p === dirname(p)) throw new BackupInputError(`cannot use ${abs} as target dir: no existing parent`);
  }
}

/** `p` through symlinks, also when its last components do not exist yet. */
export async function realPathOf(p: string): Promise<string> {
  const abs = resolve(p);
  let existing = abs;
  while (true) {
    try {
      return join(await realpath(existing), relative(existing, abs));
    } catch {
      const up = dirname(existing);
      if (up === existing) return abs;
      existing = up;
    }
  }
}

/** Refuses a target inside the state dir, equal to it, or holding it (checked on real paths). */
export async function assertApartFromState(target: string, stateDir: string): Promise<void> {
  const [t, s] = await Promise.all([realPathOf(target), realPathOf(stateDir)]);
  const inside = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b === '/';
  if (inside(t, s) || inside(s, t)) {
    const real = t === target && s === stateDir ? '' : ` (real paths ${t} and ${s})`;
    throw new BackupInputError(`target dir ${target} and state dir ${stateDir} must not contain each other${real}`);
  }
}

/**
 * Creates what inspectTarget found missing; returns the dirs it made, outermost first (one made
 * meanwhile by someone else is used, not claimed). On failure, what it made is removed again.
 */
export async function createTarget(plan: TargetPlan): Promise<string[]> {
  const made: string[] = [];
  for (const d of plan.missing) {
    try {
      await mkdir(d, { mode: 0o755 });
      made.push(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && (await stat(d).catch(() => undefined))?.isDirectory())
        continue;
      await removeCreated(made);
      throw new BackupInputError(`cannot create target dir ${d}: ${(e as Error).message}`);
    }
  }
  return made;
}

/** Removes dirs createTarget made, innermost first; one that someone has put something in stays. */
export async function removeCreated(made: readonly string[]): Promise<void> {
  for (const d of [...made].reverse()) {
    const removed = await rmdir(d).then(
      () => true,
      () => false,
    );
    if (!removed) return;
  }
}

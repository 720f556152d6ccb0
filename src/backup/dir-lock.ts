import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupError } from './layout.js';

export const LOCKS = 'locks';
const OWNER_FILE = 'pid';

/**
 * Serializes restores and teardowns of one dir (two mount-backup runs on the same dir would otherwise
 * interleave their mounts). A lock is a dir holding its owner: "<pid> <start> <token>", `start` being the
 * process's start time (so a dead owner's pid reused by another process is not taken for it). It is built under a
 * draft name and renamed into place, so no one ever sees a lock without its owner; a lock whose owner
 * died is taken over. Returns the release function, which removes the lock only while it is still ours.
 */
export async function lockDir(stateDir: string, dir: string): Promise<() => Promise<void>> {
  const root = join(stateDir, LOCKS);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const lock = join(root, createHash('sha256').update(resolve(dir)).digest('hex').slice(0, 32));
  const token = `${process.pid} ${startTime(process.pid) ?? '-'} ${randomBytes(8).toString('hex')}`;
  for (let attempt = 0; attempt < 4; attempt++) {
    if (await placeLock(lock, token)) return () => releaseLock(lock, token);
    const owner = await readOwner(lock);
    if (owner === 'gone') continue; // released (or taken over) since: try again
    const [pid, start] = owner === 'none' ? [0, undefined] : parseOwner(owner);
    if (pid && isAlive(pid, start)) {
      throw new BackupError(`another restore or unmount of ${resolve(dir)} is in progress (pid ${pid})`);
    }
    await takeOver(lock, owner);
  }
  throw new BackupError(`cannot lock ${resolve(dir)} in ${root}: it keeps changing hands`);
}

/** True if the lock is now ours; false if another lock is in place. rename() over a non-empty dir fails. */
async function placeLock(lock: string, token: string): Promise<boolean> {
  const draft = `${lock}.draft-${randomBytes(6).toString('hex')}`;
  await mkdir(draft, { mode: 0o700 });
  try {
    await writeFile(join(draft, OWNER_FILE), token);
    await rename(draft, lock);
    return true;
  } catch (e) {
    await rm(draft, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw e;
  }
}

/** The owner line; 'none' for a lock dir without one (left by an older version); 'gone' if no lock. */
async function readOwner(lock: string): Promise<string | 'none' | 'gone'> {
  try {
    return (await readFile(join(lock, OWNER_FILE), 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return (await exists(lock)) ? 'none' : 'gone';
  }
}

/**
 * Moves a dead owner's lock aside (atomically: of two takers, one moves it) and removes it. If what was
 * moved is not the lock we judged dead, a taker beat us to it and placed its own: that one goes back.
 */
async function takeOver(lock: string, deadOwner: string): Promise<void> {
  const aside = `${lock}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(lock, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const moved = await readOwner(aside);
  if (
    moved !== deadOwner &&
    (await rename(aside, lock).then(
      () => true,
      () => false,
    ))
  )
    return;
  // Dead, or (three takers at once) a live lock that cannot go back: its owner's release sees it is gone.
  await rm(aside, { recursive: true, force: true });
}

async function releaseLock(lock: string, token: string): Promise<void> {
  if ((await readOwner(lock)) !== token) return; // taken over after we were judged dead: not ours now
  // Moved aside first: a lock half-removed in place would look ownerless to a concurrent taker.
  const gone = `${lock}.released-${randomBytes(6).toString('hex')}`;
  await rename(lock, gone);
  await rm(gone, { recursive: true, force: true });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The pid, and the start time when the owner line has one (locks of this session's first version had none). */
function parseOwner(owner: string): [number, string | undefined] {
  const parts = owner.split(' ');
  const start = parts.length >= 3 && parts[1] !== '-' ? parts[1] : undefined;
  return [Number(parts[0]), start];
}

/** A process start time: field 22 of /proc/<pid>/stat (clock ticks since boot); undefined without /proc. */
export function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Is `pid` running, and (when known) is it the process that started at `start`? */
function isAlive(pid: number, start: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (start === undefined) return true;
  const now = startTime(pid);
  return now === undefined || now === start;
}

import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { lockDir } from './dir-lock.js';
import { stopProcess } from './lower.js';
import { mountEntry, unmountFuse } from './mounts.js';
import { OVERLAY_FS_TYPE } from './overlay.js';
import { type RestoreRecord, readRecords, recordsForDir, SAVED_WRITES, stateDirFrom, writeRecord } from './state.js';

export interface TeardownResult {
  record: RestoreRecord;
  /** Where the upper dir's writes were moved, when it held any and they were kept. */
  savedWrites?: string;
  discardedWrites: boolean;
  /** Mounts that needed a lazy unmount because they were busy. */
  lazyUnmounts: string[];
}

/** Entries in upper, or a change to its root since the restore set it up (see upperCtimeMs). */
async function holdsWrites(record: RestoreRecord): Promise<boolean> {
  if ((await readdir(record.upper).catch(() => [] as string[])).length > 0) return true;
  if (record.upperCtimeMs === undefined) return false;
  const st = await stat(record.upper).catch(() => undefined);
  return st !== undefined && st.ctimeMs !== record.upperCtimeMs;
}

function stamp(): string {
  return new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/**
 * Unmounts one recorded restore: overlay first (nothing may hold the lower busy), then the lower mount,
 * then its process. Its upper dir is moved to saved-writes/ when it holds writes (unless discarded),
 * and the restore's own dir is removed. Only paths from the record are touched.
 */
export async function teardownRecord(
  stateDir: string,
  record: RestoreRecord,
  discardWrites: boolean,
): Promise<TeardownResult> {
  const lazyUnmounts: string[] = [];
  let overlayDetached = false;
  if (overlayIsOurs(record)) {
    overlayDetached = (await unmountFuse(record.dir)).lazy;
    if (overlayDetached) lazyUnmounts.push(record.dir);
  }
  const writes = await setWritesAside(stateDir, record, discardWrites);
  if (overlayDetached && !(await releaseLower(record))) {
    // The detached overlay still reads through the lower mount (a file is open): detaching the lower
    // too would break that file, so it stays until nothing uses it (sweepDetached, on later runs).
    record.status = 'detached';
    await writeRecord(record);
    return { record, ...writes, lazyUnmounts };
  }
  if (!overlayDetached) await releaseLower(record, { lazyIfBusy: true });
  await removeRestoreDir(record);
  return { record, ...writes, lazyUnmounts };
}

/** Unmounts the lower mount and stops its process; false when it is busy and lazyIfBusy is not set. */
async function releaseLower(record: RestoreRecord, options: { lazyIfBusy?: boolean } = {}): Promise<boolean> {
  let detached = false;
  try {
    detached = (await unmountFuse(record.lower, { lazyIfBusy: !!options.lazyIfBusy })).lazy;
  } catch (e) {
    if (options.lazyIfBusy) throw e;
    return false;
  }
  if (record.lowerPid) await stopProcess(record.lowerPid, record.lower, { detached });
  return true;
}

/** Moves an upper dir holding writes to saved-writes/ (or deletes it with discardWrites). */
async function setWritesAside(
  stateDir: string,
  record: RestoreRecord,
  discardWrites: boolean,
): Promise<{ savedWrites?: string; discardedWrites: boolean }> {
  if (!(await holdsWrites(record))) return { discardedWrites: false };
  if (discardWrites) {
    await rm(record.upper, { recursive: true, force: true });
    return { discardedWrites: true };
  }
  const savedRoot = join(stateDir, SAVED_WRITES);
  await mkdir(savedRoot, { recursive: true, mode: 0o700 });
  const savedWrites = join(savedRoot, `${record.backupId}_${record.restoreId}-${stamp()}`);
  // A rename within the state dir: instant, and safe even while a detached overlay still uses upper.
  await rename(record.upper, savedWrites);
  return { savedWrites, discardedWrites: false };
}

async function removeRestoreDir(record: RestoreRecord): Promise<void> {
  await rm(record.base, { recursive: true, force: true }).catch(async () => {
    // A lazily detached lower may leave its mountpoint dir briefly busy: remove what we can.
    await rm(record.upper, { recursive: true, force: true });
    await rm(record.work, { recursive: true, force: true });
  });
}

/**
 * Finishes restores left 'detached' (their overlay was lazily unmounted while in use): once nothing
 * uses their lower mount any more, it is unmounted, its process stopped and its dir removed.
 */
export async function sweepDetached(stateDir: string): Promise<number> {
  let finished = 0;
  for (const rec of await readRecords(stateDir)) {
    if (rec.status !== 'detached') continue;
    if (await releaseLower(rec)) {
      await removeRestoreDir(rec);
      finished++;
    }
  }
  return finished;
}

/** Only a fuse-overlayfs mount on the recorded dir is unmounted, never something stacked there by others. */
function overlayIsOurs(record: RestoreRecord): boolean {
  return mountEntry(record.dir)?.fsType === OVERLAY_FS_TYPE;
}

/**
 * Undoes every restore recorded for `dir` (normally one). Resolves undefined when `dir` is not a
 * restored dir, so `squashfs-r2 unmount` can fall back to a plain FUSE unmount.
 */
export async function teardownRestore(
  dir: string,
  options: { discardWrites?: boolean; stateDir?: string } = {},
): Promise<TeardownResult | undefined> {
  const stateDir = stateDirFrom(options.stateDir);
  if (!existsSync(stateDir)) return undefined;
  const unlock = await lockDir(stateDir, dir);
  try {
    await sweepDetached(stateDir).catch(() => undefined);
    const records = await recordsForDir(stateDir, dir);
    if (!records.length) return undefined;
    let last: TeardownResult | undefined;
    // Newest first: an overlay stacked later sits on top.
    for (const rec of records.reverse()) last = await teardownRecord(stateDir, rec, !!options.discardWrites);
    return last;
  } finally {
    await unlock();
  }
}

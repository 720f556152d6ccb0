import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type BackupMeta, BackupError, BackupInputError, DEFAULT_PREFIX, assertBackupId, assertNotExpired, backupKeys } from './layout.js';
import { type LowerCommand, ourMountCommand, parseSize, startLowerMount, stopProcess } from './lower.js';
import { STATS_FILE } from './list.js';
import { isMountPoint, mountEntry, unmountFuse } from './mounts.js';
import { OVERLAY_FS_TYPE, mountOverlay, requireOverlayTool } from './overlay.js';
import { fetchMetaFast } from './remote.js';
import { type BucketOptions, resolveBucketOptions, sourceSpec } from './s3-client.js';
import {
  type RestoreRecord,
  SAVED_WRITES,
  ensureStateDir,
  lockDir,
  newRestoreId,
  readRecords,
  recordsForDir,
  restorePaths,
  stateDirFrom,
  writeRecord,
} from './state.js';

export interface MountBackupOptions extends Partial<BucketOptions> {
  prefix?: string;
  cacheSize?: string;
  stateDir?: string;
  /** When restoring over an earlier restore of `dir`: delete its writes instead of saving them aside. */
  discardWrites?: boolean;
  /** The lower mount process (tests and tools may substitute; default: our own `mount -f`). */
  lowerCommand?: LowerCommand;
  /** Progress lines for people (stderr in the CLI). */
  onStep?: (message: string) => void;
  now?: () => number;
}

export interface MountBackupResult {
  meta: BackupMeta;
  record: RestoreRecord;
  /** Teardown of the restore this one replaced, if any. */
  replaced: TeardownResult[];
  timingsMs: { meta: number; lower: number; overlay: number; total: number };
}

export interface TeardownResult {
  record: RestoreRecord;
  /** Where the upper dir's writes were moved, when it held any and they were kept. */
  savedWrites?: string;
  discardedWrites: boolean;
  /** Mounts that needed a lazy unmount because they were busy. */
  lazyUnmounts: string[];
}

async function assertDirectory(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st) throw new BackupInputError(`target dir ${dir} does not exist`);
  if (!st.isDirectory()) throw new BackupInputError(`target ${dir} is not a directory`);
}

async function hasEntries(dir: string): Promise<boolean> {
  return (await readdir(dir).catch(() => [] as string[])).length > 0;
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * Unmounts one recorded restore: overlay first (nothing may hold the lower busy), then the lower mount,
 * then its process. Its upper dir is moved to saved-writes/ when it holds writes (unless discarded),
 * and the restore's own dir is removed. Only paths from the record are touched.
 */
export async function teardownRecord(stateDir: string, record: RestoreRecord, discardWrites: boolean): Promise<TeardownResult> {
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

/** Moves a non-empty upper dir to saved-writes/ (or deletes it with discardWrites). */
async function setWritesAside(
  stateDir: string,
  record: RestoreRecord,
  discardWrites: boolean,
): Promise<{ savedWrites?: string; discardedWrites: boolean }> {
  if (!(await hasEntries(record.upper))) return { discardedWrites: false };
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

/**
 * Restores backup `id` onto `dir`: meta.json (TTL checked) → our FUSE mount of data.sqsh on a fresh
 * `<state>/<id>_<restoreId>/lower` → fuse-overlayfs on `dir`. Returns once `dir` answers. On failure
 * everything this call mounted or created is undone before the error is thrown.
 */
export async function mountBackup(id: string, dir: string, options: MountBackupOptions = {}): Promise<MountBackupResult> {
  const t0 = Date.now();
  // Everything checkable locally is checked before any request.
  assertBackupId(id);
  if (options.cacheSize !== undefined) parseSize(options.cacheSize);
  const bucketOptions = resolveBucketOptions(options);
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const keys = backupKeys(prefix, id);
  const target = resolve(dir);
  await assertDirectory(target);
  const stateDir = stateDirFrom(options.stateDir);
  if (target === stateDir || target.startsWith(`${stateDir}/`) || stateDir.startsWith(`${target}/`)) {
    throw new BackupInputError(`target dir ${target} and state dir ${stateDir} must not contain each other`);
  }
  const overlayTool = requireOverlayTool();

  const meta = await fetchMetaFast(bucketOptions, prefix, id);
  assertNotExpired(meta, options.now?.() ?? Date.now());
  const tMeta = Date.now();

  await ensureStateDir(stateDir);
  const unlock = await lockDir(stateDir, target);
  try {
    return await restoreLocked(id, target, meta, { stateDir, bucketOptions, archiveKey: keys.archive, overlayTool }, options, t0, tMeta);
  } finally {
    await unlock();
  }
}

async function restoreLocked(
  id: string,
  target: string,
  meta: BackupMeta,
  where: { stateDir: string; bucketOptions: BucketOptions; archiveKey: string; overlayTool: string },
  options: MountBackupOptions,
  t0: number,
  tMeta: number,
): Promise<MountBackupResult> {
  const say = options.onStep ?? (() => undefined);
  const { stateDir, bucketOptions, archiveKey, overlayTool } = where;
  await sweepDetached(stateDir).catch(() => undefined);
  const previous = await recordsForDir(stateDir, target);
  const replaced: TeardownResult[] = [];
  for (const rec of previous.reverse()) {
    say(`tearing down the previous restore of ${target} (backup ${rec.backupId})`);
    replaced.push(await teardownRecord(stateDir, rec, !!options.discardWrites));
  }
  if (isMountPoint(target)) {
    throw new BackupError(`${target} is already a mount point that squashfs-r2 did not create; unmount it first`);
  }

  const restoreId = newRestoreId();
  const paths = restorePaths(stateDir, id, restoreId);
  const { source, flags } = sourceSpec(bucketOptions, archiveKey);
  const record: RestoreRecord = {
    version: 1,
    backupId: id,
    restoreId,
    backupName: meta.name,
    dir: target,
    source,
    ...paths,
    status: 'mounting',
    createdAt: new Date().toISOString(),
  };
  await mkdir(paths.base, { mode: 0o700 });
  let tLower = tMeta;
  try {
    for (const d of [paths.lower, paths.upper, paths.work]) await mkdir(d, { mode: 0o700 });
    await writeRecord(record);
    say(`mounting ${source} read-only at ${paths.lower}`);
    record.lowerPid = await startLowerMount(
      { source, flags, mountpoint: paths.lower, cacheSize: options.cacheSize, logFile: paths.lowerLog, statsFile: join(paths.base, STATS_FILE) },
      options.lowerCommand ?? ourMountCommand,
    );
    await writeRecord(record);
    // The overlay's root takes its owner and mode from upper: give it the backup's root attributes.
    const root = await stat(paths.lower);
    await chown(paths.upper, root.uid, root.gid);
    await chmod(paths.upper, root.mode & 0o7777);
    tLower = Date.now();
    say(`mounting ${overlayTool} on ${target}`);
    await mountOverlay(overlayTool, paths, target);
    await readdir(target); // usable, not just listed
    record.status = 'active';
    await writeRecord(record);
  } catch (e) {
    const undo = await teardownRecord(stateDir, record, true).then(
      () => 'restore undone, nothing left mounted',
      (u: unknown) => `undoing the restore failed too: ${(u as Error).message}`,
    );
    const err = e instanceof Error ? e : new Error(String(e));
    err.message = `${err.message} (${undo})`;
    throw err;
  }
  const t1 = Date.now();
  return {
    meta,
    record,
    replaced,
    timingsMs: { meta: tMeta - t0, lower: tLower - tMeta, overlay: t1 - tLower, total: t1 - t0 },
  };
}

import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { FuseCpu } from '../fs/affinity.js';
import { lockDir } from './dir-lock.js';
import {
  assertBackupId,
  assertNotExpired,
  BackupError,
  BackupInputError,
  type BackupMeta,
  backupKeys,
  DEFAULT_PREFIX,
} from './layout.js';
import { STATS_FILE } from './list.js';
import { type LowerProcess, parseSize, startLowerProcess } from './lower.js';
import { isMountPoint } from './mounts.js';
import { mountOverlay, requireOverlayTool } from './overlay.js';
import { fetchPrefetchList, type PrefetchFetch } from './prefetch.js';
import { fetchMetaFast } from './remote.js';
import { copyRootAttributes, ROOT_XATTRS_FILE, readRootXattrs } from './root-attrs.js';
import { type BucketOptions, resolveBucketOptions, sourceSpec } from './s3-client.js';
import {
  ensureStateDir,
  newRestoreId,
  type RestoreRecord,
  recordsForDir,
  restorePaths,
  stateDirFrom,
  writeRecord,
} from './state.js';
import { assertApartFromState, createTarget, inspectTarget, removeCreated, type TargetPlan } from './target.js';
import { sweepDetached, type TeardownResult, teardownRecord } from './teardown.js';

export { type TeardownResult, teardownRestore } from './teardown.js';

export interface MountBackupOptions extends Partial<BucketOptions> {
  prefix?: string;
  cacheSize?: string;
  stateDir?: string;
  /** When restoring over an earlier restore of `dir`: delete its writes instead of saving them aside. */
  discardWrites?: boolean;
  /** Persistent chunk cache of the lower mount (survives restores; keyed by bucket/key/ETag). */
  cacheDir?: string;
  /** Size limit of `cacheDir`, e.g. "10G". */
  cacheDirMax?: string;
  /** Fetch the whole archive in the background once mounted (progress in `list`). */
  hydrate?: boolean;
  /** The lower mount's CPU for its event loop and FUSE threads (fs/affinity.ts); default auto. */
  fuseCpu?: FuseCpu;
  /**
   * Record which parts of the archive this restore reads in its first `recordSeconds` (default 120)
   * and store them as `<prefix>/<id>/prefetch.json`; later restores fetch those first.
   */
  recordPrefetch?: boolean;
  recordSeconds?: number;
  /** Progress lines for people (stderr in the CLI). */
  onStep?: (message: string) => void;
  /** Problems that do not stop the restore (a malformed prefetch.json). */
  onWarning?: (message: string) => void;
  now?: () => number;
}

export interface MountBackupResult {
  meta: BackupMeta;
  record: RestoreRecord;
  /** Teardown of the restore this one replaced, if any. */
  replaced: TeardownResult[];
  /** meta: until meta.json checked out; lower: then until the lower mount served (its process was started at 0). */
  timingsMs: { meta: number; lower: number; overlay: number; total: number };
  /** What became of the recorded prefetch list: handed to the lower mount, absent, unusable, or recording now. */
  prefetch: 'list' | 'missing' | 'invalid' | 'recording';
}

const DEFAULT_RECORD_SECONDS = 120;

/**
 * Restores backup `id` onto `dir`: meta.json (TTL checked) → our FUSE mount of data.sqsh on a fresh
 * `<state>/<id>_<restoreId>/lower` → fuse-overlayfs on `dir`, whose root then shows the archive
 * root's owner, mode, times and xattrs. A missing `dir` is created (with its parents, as the sandbox
 * SDK's restore does), but only once the backup checked out. Returns once `dir` answers. On failure
 * everything this call mounted or created is undone before the error is thrown.
 *
 * The lower mount's process is started first, alongside the meta.json request: its start-up and the
 * archive's first GETs overlap that round trip; it mounts only once the backup checks out.
 */
export async function mountBackup(
  id: string,
  dir: string,
  options: MountBackupOptions = {},
): Promise<MountBackupResult> {
  const t0 = Date.now();
  // Everything checkable locally is checked before any request.
  assertBackupId(id);
  if (options.cacheSize !== undefined) parseSize(options.cacheSize);
  if (options.cacheDirMax !== undefined) parseSize(options.cacheDirMax);
  const recordSeconds = options.recordSeconds ?? DEFAULT_RECORD_SECONDS;
  if (!(recordSeconds > 0) || !Number.isFinite(recordSeconds)) {
    throw new BackupInputError(`record seconds must be a positive number, got ${options.recordSeconds}`);
  }
  const bucketOptions = resolveBucketOptions(options);
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const keys = backupKeys(prefix, id);
  // Only looked at here: a missing target is created once the backup's own checks passed.
  const plan = await inspectTarget(dir);
  const target = plan.dir;
  const stateDir = stateDirFrom(options.stateDir);
  await assertApartFromState(target, stateDir);
  const overlayTool = requireOverlayTool();

  // The prefetch list is fetched alongside meta.json: no extra round trip.
  const prefetchFetch: Promise<PrefetchFetch | undefined> = options.recordPrefetch
    ? Promise.resolve(undefined)
    : fetchPrefetchList(bucketOptions, keys.prefetch);
  prefetchFetch.catch(() => undefined);
  await ensureStateDir(stateDir);
  const restoreId = newRestoreId();
  const paths = restorePaths(stateDir, id, restoreId);
  const { source, flags } = sourceSpec(bucketOptions, keys.archive);
  await mkdir(paths.base, { mode: 0o700 });
  let lower: LowerProcess | undefined;
  /** Before anything is recorded: stop the lower process (it has not mounted) and drop its dir. */
  const discard = async (e: unknown): Promise<never> => {
    await lower?.abort();
    await rm(paths.base, { recursive: true, force: true });
    throw e;
  };
  let meta: BackupMeta;
  try {
    lower = startLowerProcess({
      source,
      flags,
      mountpoint: paths.lower,
      cacheSize: options.cacheSize,
      logFile: paths.lowerLog,
      statsFile: join(paths.base, STATS_FILE),
      rootXattrsFile: join(paths.base, ROOT_XATTRS_FILE),
      cacheDir: options.cacheDir === undefined ? undefined : resolve(options.cacheDir),
      cacheDirMax: options.cacheDirMax,
      hydrate: options.hydrate,
      fuseCpu: options.fuseCpu,
      recordPrefetch: options.recordPrefetch
        ? { bucket: bucketOptions.bucket, key: keys.prefetch, seconds: recordSeconds }
        : undefined,
    });
    meta = await fetchMetaFast(bucketOptions, prefix, id);
    assertNotExpired(meta, options.now?.() ?? Date.now());
  } catch (e) {
    return discard(e);
  }
  const tMeta = Date.now();

  const unlock = await lockDir(stateDir, target).catch(discard);
  try {
    return await restoreLocked(
      id,
      plan,
      meta,
      { stateDir, bucketOptions, overlayTool, prefetchFetch, restoreId, paths, source, lower, discard },
      options,
      t0,
      tMeta,
    );
  } finally {
    await unlock();
  }
}

async function restoreLocked(
  id: string,
  plan: TargetPlan,
  meta: BackupMeta,
  where: {
    stateDir: string;
    bucketOptions: BucketOptions;
    overlayTool: string;
    prefetchFetch: Promise<PrefetchFetch | undefined>;
    restoreId: string;
    paths: ReturnType<typeof restorePaths>;
    source: string;
    /** Started, opening the archive, not yet mounted. */
    lower: LowerProcess;
    discard: (e: unknown) => Promise<never>;
  },
  options: MountBackupOptions,
  t0: number,
  tMeta: number,
): Promise<MountBackupResult> {
  const say = options.onStep ?? (() => undefined);
  const { stateDir, overlayTool, restoreId, paths, source, lower } = where;
  const target = plan.dir;
  const warn = options.onWarning ?? (() => undefined);
  const replaced: TeardownResult[] = [];
  let made: string[] = [];
  const discard = async (e: unknown): Promise<never> => {
    await removeCreated(made);
    return where.discard(e);
  };
  try {
    made = await createTarget(plan);
    if (made.length) say(`created ${target}`);
    await sweepDetached(stateDir).catch(() => undefined);
    const previous = await recordsForDir(stateDir, target);
    for (const rec of previous.reverse()) {
      say(`tearing down the previous restore of ${target} (backup ${rec.backupId})`);
      replaced.push(await teardownRecord(stateDir, rec, !!options.discardWrites));
    }
    if (isMountPoint(target)) {
      throw new BackupError(`${target} is already a mount point that squashfs-r2 did not create; unmount it first`);
    }
  } catch (e) {
    return discard(e);
  }

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
    lowerPid: lower.pid,
  };
  let tLower = tMeta;
  let prefetch: MountBackupResult['prefetch'] = 'missing';
  try {
    for (const d of [paths.lower, paths.upper, paths.work]) await mkdir(d, { mode: 0o700 });
    await writeRecord(record);
    const fetched = await where.prefetchFetch;
    let prefetchListFile: string | undefined;
    if (fetched?.kind === 'list') {
      prefetchListFile = join(paths.base, 'prefetch.json');
      await writeFile(prefetchListFile, JSON.stringify(fetched.list), { mode: 0o600 });
      say(`prefetch list of ${fetched.list.ranges.length} ranges found`);
    } else if (fetched?.kind === 'invalid') {
      warn(`prefetch.json of backup ${id} ignored: ${fetched.reason}`);
    }
    prefetch = fetched ? fetched.kind : 'recording';
    say(`mounting ${source} read-only at ${paths.lower}`);
    await lower.go({ prefetchListFile });
    const copied = await copyRootAttributes(
      paths.lower,
      paths.upper,
      await readRootXattrs(join(paths.base, ROOT_XATTRS_FILE)),
    );
    if (copied.skipped.length)
      warn(`xattrs of fuse-overlayfs's own on the archive root not restored: ${copied.skipped.join(', ')}`);
    if (copied.xattrFailure)
      warn(`the archive root's xattrs could not be set on ${paths.upper}: ${copied.xattrFailure}`);
    record.upperCtimeMs = copied.upperCtimeMs;
    tLower = Date.now();
    say(`mounting ${overlayTool} on ${target}`);
    await mountOverlay(overlayTool, paths, target);
    // Usable, not just listed: the overlay answers for its root. Not a readdir: fuse-overlayfs then
    // loads the root and looks up a whiteout for every entry of the directories below (700 FUSE
    // lookups on W2's tree, 250 ms of a 500 ms restore) that a user's first `ls` pays anyway.
    await stat(target);
    record.status = 'active';
    await writeRecord(record);
  } catch (e) {
    const undo = await teardownRecord(stateDir, record, true).then(
      async () => {
        await removeCreated(made);
        return 'restore undone, nothing left mounted';
      },
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
    prefetch,
  };
}

import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LOCKS } from './dir-lock.js';
import { BackupError, BackupInputError } from './layout.js';

/**
 * The restore state dir: one fresh `<id>_<restoreId>` dir per restore (lower, upper, work, the lower
 * process's log, and restore.json describing it), plus `saved-writes/` for upper dirs moved aside.
 * A fresh dir per restore is what keeps a stale upper file from leaking into the next restore.
 */
export const DEFAULT_STATE_DIR = '/var/lib/squashfs-r2/restores';
export const RECORD_FILE = 'restore.json';
export const SAVED_WRITES = 'saved-writes';

export function stateDirFrom(explicit?: string, env = process.env): string {
  const dir = resolve(explicit ?? env.SQUASHFS_R2_STATE_DIR ?? DEFAULT_STATE_DIR);
  // fuse-overlayfs option syntax uses "," and ":" as separators and has no escape for them.
  if (/[,:\n]/.test(dir)) throw new BackupInputError(`state dir ${JSON.stringify(dir)} must not contain "," or ":"`);
  return dir;
}

export interface RestoreRecord {
  version: 1;
  backupId: string;
  restoreId: string;
  backupName: string | null;
  /** The restored (overlay) directory, absolute. */
  dir: string;
  /** Lower mount source, e.g. s3://bucket/backups/<id>/data.sqsh (never credentials). */
  source: string;
  base: string;
  lower: string;
  upper: string;
  work: string;
  lowerLog: string;
  lowerPid?: number;
  /**
   * The upper dir's ctime once it was given the archive root's attributes: a later one means the
   * restored dir itself was changed (chmod, chown, touch, xattrs), which counts as a write to keep.
   */
  upperCtimeMs?: number;
  /**
   * 'detached': the overlay was lazily unmounted while a file was open through it; the lower mount
   * stays until nothing uses it (see sweepDetached), and the record no longer belongs to `dir`.
   */
  status: 'mounting' | 'active' | 'detached';
  createdAt: string;
}

export async function ensureStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await chmod(stateDir, 0o700);
}

export function newRestoreId(): string {
  return randomBytes(6).toString('hex');
}

export function restorePaths(stateDir: string, backupId: string, restoreId: string) {
  const base = join(stateDir, `${backupId}_${restoreId}`);
  return {
    base,
    lower: join(base, 'lower'),
    upper: join(base, 'upper'),
    work: join(base, 'work'),
    lowerLog: join(base, 'lower.log'),
  };
}

export async function writeRecord(record: RestoreRecord): Promise<void> {
  const tmp = join(record.base, `.${RECORD_FILE}.tmp`);
  await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, join(record.base, RECORD_FILE));
}

/** Every restore recorded in the state dir (unreadable records are skipped). */
export async function readRecords(stateDir: string): Promise<RestoreRecord[]> {
  const names = await readdir(stateDir).catch(() => [] as string[]);
  const out: RestoreRecord[] = [];
  for (const name of names) {
    if (name === SAVED_WRITES || name === LOCKS) continue;
    try {
      const rec = JSON.parse(await readFile(join(stateDir, name, RECORD_FILE), 'utf8')) as RestoreRecord;
      if (rec.version === 1 && rec.base === join(stateDir, name)) out.push(rec);
    } catch {
      // not a restore dir (or one being created)
    }
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export async function recordsForDir(stateDir: string, dir: string): Promise<RestoreRecord[]> {
  const abs = resolve(dir);
  return (await readRecords(stateDir)).filter((r) => r.dir === abs && r.status !== 'detached');
}

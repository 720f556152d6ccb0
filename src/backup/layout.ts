/**
 * The backup layout shared with the Cloudflare sandbox SDK:
 *   <prefix>/<id>/data.sqsh   the mksquashfs archive
 *   <prefix>/<id>/meta.json   {id, dir, name, sizeBytes, ttl, createdAt}
 * `ttl` is in seconds, `createdAt` an ISO 8601 string, `name` is null when not given.
 * meta.json is written last, so its presence means the archive upload completed.
 */

export const DEFAULT_PREFIX = 'backups';
export const ARCHIVE_OBJECT = 'data.sqsh';
export const META_OBJECT = 'meta.json';
/** Recorded prefetch list of the archive (issue 8, src/r2/prefetch-record.ts); optional. */
export const PREFETCH_OBJECT = 'prefetch.json';
/** The SDK's default: three days. */
export const DEFAULT_TTL_SECONDS = 259_200;
/** A restore is refused this long before the backup expires, so it cannot vanish mid-restore. */
export const EXPIRY_MARGIN_MS = 60_000;
export const MAX_NAME_LENGTH = 256;
export const COMPRESSIONS = ['lz4', 'zstd', 'gzip'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export interface BackupMeta {
  id: string;
  dir: string;
  name: string | null;
  sizeBytes: number;
  ttl: number;
  createdAt: string;
}

/** A usage error found before any request is made (bad id, bad option). */
export class BackupInputError extends Error {
  readonly exitCode = 2;
  override name = 'BackupInputError';
}

/** Something about the backup itself (missing, expired, malformed meta.json). */
export class BackupError extends Error {
  override name = 'BackupError';
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isBackupId(id: string): boolean {
  return UUID.test(id);
}

export function assertBackupId(id: string): void {
  if (!isBackupId(id)) {
    throw new BackupInputError(
      `invalid backup id ${JSON.stringify(id)}: expected a UUID like 0b5e3f0c-6d1a-4c53-9a55-3f0e6c1d2b7a`,
    );
  }
}

/** Normalizes a prefix: no leading/trailing slashes, no empty or ".." segments. */
export function normalizePrefix(prefix: string): string {
  const segments = prefix.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '..' || s === '.')) {
    throw new BackupInputError(`invalid prefix ${JSON.stringify(prefix)}: "." and ".." segments are not allowed`);
  }
  return segments.join('/');
}

export function backupKeys(
  prefix: string,
  id: string,
): { archive: string; meta: string; prefetch: string; dir: string } {
  assertBackupId(id);
  const p = normalizePrefix(prefix);
  const dir = p ? `${p}/${id}` : id;
  return {
    dir,
    archive: `${dir}/${ARCHIVE_OBJECT}`,
    meta: `${dir}/${META_OBJECT}`,
    prefetch: `${dir}/${PREFETCH_OBJECT}`,
  };
}

/** Parses and checks meta.json; `expectedId` must match its `id`. */
export function parseMeta(text: string, expectedId: string): BackupMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new BackupError(`meta.json of backup ${expectedId} is not valid JSON (${(e as Error).message})`);
  }
  const bad = (why: string): never => {
    throw new BackupError(`meta.json of backup ${expectedId} is malformed: ${why}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('not an object');
  const m = raw as Record<string, unknown>;
  if (m.id !== expectedId) bad(`id is ${JSON.stringify(m.id)}`);
  if (typeof m.dir !== 'string') bad('dir is not a string');
  if (m.name !== null && m.name !== undefined && typeof m.name !== 'string') bad('name is not a string');
  if (typeof m.sizeBytes !== 'number' || !Number.isSafeInteger(m.sizeBytes) || m.sizeBytes < 0)
    bad('sizeBytes is not a size');
  if (typeof m.ttl !== 'number' || !Number.isFinite(m.ttl) || m.ttl <= 0)
    bad('ttl is not a positive number of seconds');
  if (typeof m.createdAt !== 'string' || Number.isNaN(Date.parse(m.createdAt))) bad('createdAt is not a date');
  return {
    id: m.id as string,
    dir: m.dir as string,
    name: (m.name as string | null | undefined) ?? null,
    sizeBytes: m.sizeBytes as number,
    ttl: m.ttl as number,
    createdAt: m.createdAt as string,
  };
}

export function expiresAt(meta: BackupMeta): Date {
  return new Date(Date.parse(meta.createdAt) + meta.ttl * 1000);
}

/** Throws when the backup expired or expires within the margin. */
export function assertNotExpired(meta: BackupMeta, now = Date.now()): void {
  const end = expiresAt(meta).getTime();
  if (now + EXPIRY_MARGIN_MS >= end) {
    const when =
      end <= now
        ? `expired at ${new Date(end).toISOString()}`
        : `expires at ${new Date(end).toISOString()}, within the ${EXPIRY_MARGIN_MS / 1000} s safety margin`;
    throw new BackupError(`backup ${meta.id} ${when} (created ${meta.createdAt}, ttl ${meta.ttl} s)`);
  }
}

export function newMeta(fields: Omit<BackupMeta, 'createdAt'>, now = new Date()): BackupMeta {
  return { ...fields, createdAt: now.toISOString() };
}

import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createArchive } from './archive.js';
import {
  BackupError,
  BackupInputError,
  type BackupMeta,
  backupKeys,
  COMPRESSIONS,
  type Compression,
  DEFAULT_PREFIX,
  DEFAULT_TTL_SECONDS,
  MAX_NAME_LENGTH,
  newMeta,
} from './layout.js';
import { deleteQuietly, headObject } from './remote.js';
import { type BucketOptions, createS3Client, describeS3Failure } from './s3-client.js';

export interface CreateBackupOptions extends BucketOptions {
  prefix?: string;
  compression?: Compression;
  excludes?: string[];
  ttl?: number;
  name?: string;
  /** Upload progress, called as parts complete. */
  onProgress?: (loaded: number, total: number) => void;
  /** Called when a phase starts (for narration): "archive", "upload", "meta". */
  onPhase?: (phase: 'archive' | 'upload' | 'meta', detail: string) => void;
}

/** Multipart parts: S3's minimum is 5 MiB; 8 MiB × 4 in flight keeps memory at ~32 MiB. */
const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;

/** Names end up in JSON and in terminals: no control characters (C0 and DEL). */
function hasControlCharacters(text: string): boolean {
  return [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
}

function checkOptions(o: CreateBackupOptions): { compression: Compression; ttl: number } {
  const compression = o.compression ?? 'lz4';
  if (!COMPRESSIONS.includes(compression)) {
    throw new BackupInputError(`unknown compression ${JSON.stringify(compression)} (${COMPRESSIONS.join('|')})`);
  }
  const ttl = o.ttl ?? DEFAULT_TTL_SECONDS;
  if (!Number.isFinite(ttl) || ttl <= 0) throw new BackupInputError('ttl must be a positive number of seconds');
  if (o.name !== undefined) {
    if (o.name.length > MAX_NAME_LENGTH) throw new BackupInputError(`name longer than ${MAX_NAME_LENGTH} characters`);
    if (hasControlCharacters(o.name)) throw new BackupInputError('name must not contain control characters');
  }
  return { compression, ttl };
}

/**
 * Archives `dir` with mksquashfs, uploads it as `<prefix>/<id>/data.sqsh` (multipart), checks its size,
 * then writes meta.json. If anything fails after the upload began, the objects are deleted again, so a
 * backup either exists completely or not at all.
 */
export async function createBackup(dir: string, o: CreateBackupOptions): Promise<BackupMeta> {
  const { compression, ttl } = checkOptions(o);
  const absDir = resolve(dir);
  const id = randomUUID();
  const keys = backupKeys(o.prefix ?? DEFAULT_PREFIX, id);
  const scratch = await mkdtemp(join(tmpdir(), 'squashfs-r2-backup-'));
  const archive = join(scratch, 'data.sqsh');
  const client = await createS3Client(o);
  let uploadStarted = false;
  try {
    o.onPhase?.('archive', `mksquashfs ${absDir} -comp ${compression}`);
    const sizeBytes = await createArchive(absDir, archive, {
      compression,
      excludes: o.excludes ?? [],
      scratchDir: scratch,
    });

    o.onPhase?.('upload', `s3://${o.bucket}/${keys.archive}`);
    const { Upload } = await import('@aws-sdk/lib-storage');
    const upload = new Upload({
      client,
      params: {
        Bucket: o.bucket,
        Key: keys.archive,
        Body: createReadStream(archive),
        ContentType: 'application/octet-stream',
      },
      partSize: PART_SIZE,
      queueSize: PARTS_IN_FLIGHT,
      leavePartsOnError: false,
    });
    upload.on('httpUploadProgress', (p) => o.onProgress?.(p.loaded ?? 0, p.total ?? sizeBytes));
    uploadStarted = true;
    try {
      await upload.done();
    } catch (e) {
      throw describeS3Failure(e, o, keys.archive, 'uploading');
    }
    const head = await headObject(client, o, keys.archive);
    if (head.size !== sizeBytes) {
      throw new BackupError(
        `upload verification failed: ${keys.archive} has ${head.size} bytes, expected ${sizeBytes}`,
      );
    }

    const meta = newMeta({ id, dir: absDir, name: o.name ?? null, sizeBytes, ttl });
    o.onPhase?.('meta', `s3://${o.bucket}/${keys.meta}`);
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    try {
      await client.send(
        new PutObjectCommand({
          Bucket: o.bucket,
          Key: keys.meta,
          Body: JSON.stringify(meta),
          ContentType: 'application/json',
        }),
      );
    } catch (e) {
      throw describeS3Failure(e, o, keys.meta, 'writing');
    }
    return meta;
  } catch (e) {
    if (uploadStarted) {
      await deleteQuietly(client, o, keys.meta);
      await deleteQuietly(client, o, keys.archive);
    }
    throw e;
  } finally {
    client.destroy();
    await rm(scratch, { recursive: true, force: true });
  }
}

import type { S3Client } from '@aws-sdk/client-s3';
import { BackupError, type BackupMeta, backupKeys, parseMeta } from './layout.js';
import { type BucketOptions, describeS3Failure, sourceSpec } from './s3-client.js';

/** Reads and validates `<prefix>/<id>/meta.json`. A missing meta.json means "no such backup". */
export async function fetchMeta(client: S3Client, o: BucketOptions, prefix: string, id: string): Promise<BackupMeta> {
  const { GetObjectCommand } = await import('@aws-sdk/client-s3');
  const keys = backupKeys(prefix, id);
  let text: string;
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: o.bucket, Key: keys.meta }));
    text = (await res.Body?.transformToString('utf8')) ?? '';
  } catch (e) {
    const failure = describeS3Failure(e, o, keys.meta, 'reading');
    if ((failure as { code?: string }).code === 'NoSuchKey') {
      throw new BackupError(
        `backup ${id} not found: no ${keys.meta} in bucket "${o.bucket}" (wrong id, prefix or bucket?)`,
      );
    }
    throw failure;
  }
  return parseMeta(text, id);
}

/** Size and ETag of an object, for checks (upload verification, "the bucket is unchanged"). */
export async function headObject(
  client: S3Client,
  o: BucketOptions,
  key: string,
): Promise<{ size: number; etag: string }> {
  const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
  try {
    const res = await client.send(new HeadObjectCommand({ Bucket: o.bucket, Key: key }));
    return { size: res.ContentLength ?? -1, etag: res.ETag ?? '' };
  } catch (e) {
    throw describeS3Failure(e, o, key, 'checking');
  }
}

export async function deleteQuietly(client: S3Client, o: BucketOptions, key: string): Promise<void> {
  const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  await client.send(new DeleteObjectCommand({ Bucket: o.bucket, Key: key })).catch(() => undefined);
}

/** meta.json is a few hundred bytes; anything this large is not one. */
const META_MAX_BYTES = 64 * 1024;

/**
 * Reads a small object (meta.json, prefetch.json) through the mount's own transport (node:http +
 * SigV4) in one GET, instead of the AWS SDK: with static credentials no SDK is loaded at all, which
 * is most of mount-backup's own start-up time. Transport errors (SourceError, with S3's code) pass
 * through; an object over `maxBytes` is reported by its size, not read.
 */
export async function readSmallObject(
  o: BucketOptions,
  key: string,
  maxBytes: number,
): Promise<{ text: string } | { tooLarge: number }> {
  const { source } = sourceSpec(o, key);
  const { openRemoteObject } = await import('../r2/open-source.js');
  const object = await openRemoteObject(source, {
    endpoint: o.endpoint,
    accountId: o.accountId,
    pathStyle: o.pathStyle,
    region: o.region,
  });
  try {
    const { info, head } = await object.open(maxBytes, 0);
    if (info.size > maxBytes) return { tooLarge: info.size };
    return { text: new TextDecoder().decode(head) };
  } finally {
    await object.close();
  }
}

/** fetchMeta through readSmallObject (no SDK on the restore path). */
export async function fetchMetaFast(o: BucketOptions, prefix: string, id: string): Promise<BackupMeta> {
  const keys = backupKeys(prefix, id);
  let text: string;
  try {
    const read = await readSmallObject(o, keys.meta, META_MAX_BYTES);
    if ('tooLarge' in read) {
      throw new BackupError(`meta.json of backup ${id} is ${read.tooLarge} bytes: not a backup's meta.json`);
    }
    text = read.text;
  } catch (e) {
    if (e instanceof BackupError) throw e;
    const se = e as { code?: string; status?: number };
    if (!se.code) throw e;
    const failure = describeS3Failure(
      { name: se.code, message: (e as Error).message, $metadata: { httpStatusCode: se.status } },
      o,
      keys.meta,
      'reading',
    );
    if (se.code === 'NoSuchKey') {
      throw new BackupError(
        `backup ${id} not found: no ${keys.meta} in bucket "${o.bucket}" (wrong id, prefix or bucket?)`,
      );
    }
    throw failure;
  }
  return parseMeta(text, id);
}

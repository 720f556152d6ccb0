import type { S3Client } from '@aws-sdk/client-s3';
import { type BackupMeta, BackupError, backupKeys, parseMeta } from './layout.js';
import { type BucketOptions, describeS3Failure } from './s3-client.js';

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
      throw new BackupError(`backup ${id} not found: no ${keys.meta} in bucket "${o.bucket}" (wrong id, prefix or bucket?)`);
    }
    throw failure;
  }
  return parseMeta(text, id);
}

/** Size and ETag of an object, for checks (upload verification, "the bucket is unchanged"). */
export async function headObject(client: S3Client, o: BucketOptions, key: string): Promise<{ size: number; etag: string }> {
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

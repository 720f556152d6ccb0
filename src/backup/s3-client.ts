import type { S3Client } from '@aws-sdk/client-s3';
import { registerSecret } from '../util/log.js';
import { BackupError, BackupInputError } from './layout.js';

/**
 * Where backups live and how to reach them. The same options name the lower mount's source
 * (`s3://bucket/key` or `r2://bucket/key`), so the mount process resolves the endpoint the same way.
 * Credentials never pass through here: they come from the environment or the SDK's provider chain.
 */
export interface BucketOptions {
  bucket: string;
  /** Any S3-compatible endpoint, e.g. http://127.0.0.1:4568. */
  endpoint?: string;
  /** Cloudflare account id: endpoint https://<id>.r2.cloudflarestorage.com, region auto. */
  accountId?: string;
  pathStyle?: boolean;
  region?: string;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ACCOUNT_ID = /^[a-zA-Z0-9]{1,64}$/;

export function resolveBucketOptions(o: Partial<BucketOptions>, env = process.env): BucketOptions {
  const bucket = o.bucket ?? env.SQUASHFS_R2_BUCKET ?? env.R2_BUCKET;
  if (!bucket) throw new BackupInputError('no bucket: pass --bucket or set SQUASHFS_R2_BUCKET');
  if (!BUCKET_NAME.test(bucket)) throw new BackupInputError(`invalid bucket name ${JSON.stringify(bucket)}`);
  if (o.endpoint && o.accountId) throw new BackupInputError('give either --endpoint or --account-id, not both');
  const accountId = o.endpoint ? undefined : (o.accountId ?? env.R2_ACCOUNT_ID);
  if (accountId !== undefined && !ACCOUNT_ID.test(accountId)) throw new BackupInputError('invalid account id');
  if (o.endpoint) {
    let url: URL;
    try {
      url = new URL(o.endpoint);
    } catch {
      throw new BackupInputError(`invalid endpoint ${JSON.stringify(o.endpoint)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new BackupInputError('endpoint must be http(s)://');
  }
  // A custom endpoint or R2 needs no region lookup: fixing it here spares the mount process the SDK's
  // profile resolution (~400 ms of imports). Plain AWS keeps the SDK's own resolution.
  const region =
    o.region ??
    (o.endpoint || accountId
      ? accountId
        ? 'auto'
        : env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1'
      : undefined);
  return { bucket, endpoint: o.endpoint, accountId, pathStyle: o.pathStyle, region };
}

/** The endpoint URL actually used (undefined: the SDK's own resolution, AWS or AWS_ENDPOINT_URL*). */
export function endpointOf(o: BucketOptions): string | undefined {
  if (o.endpoint) return o.endpoint;
  if (o.accountId) return `https://${o.accountId}.r2.cloudflarestorage.com`;
  return undefined;
}

/** Local and IP endpoints cannot resolve virtual-hosted bucket names. */
function wantsPathStyle(o: BucketOptions): boolean {
  if (o.pathStyle !== undefined) return o.pathStyle;
  const ep = endpointOf(o) ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (!ep) return false;
  const host = new URL(ep).hostname;
  return host === 'localhost' || /^[0-9.]+$/.test(host) || host.startsWith('[');
}

export async function createS3Client(o: BucketOptions): Promise<S3Client> {
  // Lazy: the SDK is heavy and only the backup commands need it.
  const { S3Client } = await import('@aws-sdk/client-s3');
  const env = process.env;
  // R2_* keys for r2 (account id) only, as the mount's own transport does for r2:// sources.
  const r2Key = o.accountId && !o.endpoint ? env.R2_ACCESS_KEY_ID : undefined;
  const r2Secret = o.accountId && !o.endpoint ? env.R2_SECRET_ACCESS_KEY : undefined;
  registerSecret(r2Secret);
  registerSecret(env.AWS_SECRET_ACCESS_KEY);
  registerSecret(env.AWS_SESSION_TOKEN);
  return new S3Client({
    endpoint: endpointOf(o),
    region: o.region ?? (o.accountId ? 'auto' : (env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1')),
    forcePathStyle: wantsPathStyle(o),
    credentials: r2Key && r2Secret ? { accessKeyId: r2Key, secretAccessKey: r2Secret } : undefined,
    maxAttempts: 3,
  });
}

/** The source string and mount flags for the lower FUSE mount of `key`. */
export function sourceSpec(o: BucketOptions, key: string): { source: string; flags: string[] } {
  if (o.accountId && !o.endpoint) {
    return {
      source: `r2://${o.bucket}/${key}`,
      flags: ['--account-id', o.accountId, ...(o.region ? ['--region', o.region] : [])],
    };
  }
  const flags: string[] = [];
  if (o.endpoint) flags.push('--endpoint', o.endpoint);
  if (wantsPathStyle(o)) flags.push('--path-style');
  if (o.region) flags.push('--region', o.region);
  return { source: `s3://${o.bucket}/${key}`, flags };
}

interface SdkError {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Turns an SDK failure into one clear sentence naming the object (never credentials). */
export function describeS3Failure(e: unknown, o: BucketOptions, key: string, action: string): BackupError {
  const err = (e ?? {}) as SdkError;
  const code = err.name ?? err.Code ?? 'Error';
  const status = err.$metadata?.httpStatusCode;
  const where = `s3://${o.bucket}/${key}${endpointOf(o) ? ` at ${endpointOf(o)}` : ''}`;
  let why: string;
  switch (code) {
    case 'NoSuchBucket':
      why = `bucket "${o.bucket}" does not exist`;
      break;
    case 'NoSuchKey':
    case 'NotFound':
      why = 'object not found';
      break;
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
    case 'AccessDenied':
    case 'Forbidden':
      why = `access denied (${code}): check the credentials (R2_ACCESS_KEY_ID/R2_SECRET_ACCESS_KEY or the AWS credential chain)`;
      break;
    case 'CredentialsProviderError':
      why = 'no credentials found (set R2_ACCESS_KEY_ID/R2_SECRET_ACCESS_KEY or AWS credentials)';
      break;
    default:
      why = `${code}${status ? ` (HTTP ${status})` : ''}: ${err.message ?? String(e)}`;
  }
  const out = new BackupError(`${action} ${where} failed: ${why}`);
  (out as BackupError & { code?: string }).code = code;
  return out;
}

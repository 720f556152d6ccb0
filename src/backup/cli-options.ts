import { type ParseArgsConfig, parseArgs } from 'node:util';
import { BackupInputError } from './layout.js';
import type { BucketOptions } from './s3-client.js';

/** Bucket flags shared by mount-backup and create-backup. */
export const BUCKET_FLAGS = {
  bucket: { type: 'string' },
  prefix: { type: 'string' },
  endpoint: { type: 'string' },
  'account-id': { type: 'string' },
  'path-style': { type: 'boolean' },
  region: { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const BUCKET_USAGE = `bucket options (credentials: R2_ACCESS_KEY_ID/R2_SECRET_ACCESS_KEY or the AWS credential chain):
  --bucket B          bucket holding the backups (or SQUASHFS_R2_BUCKET)
  --prefix P          key prefix (default "backups")
  --endpoint URL      S3-compatible endpoint (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)
  --account-id ID     Cloudflare account id: R2 endpoint, region auto (or R2_ACCOUNT_ID)
  --path-style        path-style requests (default for localhost/IP endpoints)
  --region R          region (default us-east-1, "auto" for R2)
`;

export function bucketOptionsFrom(v: Record<string, unknown>): Partial<BucketOptions> & { prefix?: string } {
  return {
    bucket: v.bucket as string | undefined,
    prefix: v.prefix as string | undefined,
    endpoint: v.endpoint as string | undefined,
    accountId: v['account-id'] as string | undefined,
    pathStyle: v['path-style'] as boolean | undefined,
    region: v.region as string | undefined,
  };
}

/** parseArgs errors (unknown flag, missing value) as usage errors (exit code 2). */
export function usageError(e: unknown, usage: string): never {
  throw new BackupInputError(`${(e as Error).message}\n\n${usage}`);
}

/**
 * The AWS SDK prints an eight-line Node-version notice on first use; in a CLI whose stdout/stderr
 * are read by people and scripts it is noise. An explicit setting in the environment still wins.
 */
export function quietSdkNotice(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

/** parseArgs with its errors turned into usage errors. */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    usageError(e, usage);
  }
}

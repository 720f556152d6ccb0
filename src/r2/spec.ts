import { fileURLToPath } from 'node:url';
import { registerSecret } from '../util/log.js';
import type { S3Credentials } from './s3-object.js';

/**
 * One string names a source everywhere (library, CLI, mount):
 *   r2://bucket/key     Cloudflare R2: endpoint https://<account-id>.r2.cloudflarestorage.com, region auto
 *   s3://bucket/key     any S3-compatible store (--endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; else AWS)
 *   https://… http://…  a public or presigned URL (plain ranged GETs, no credentials of ours)
 *   anything else       a local path (file:// URLs too)
 */
export type SourceSpec = FileSpec | HttpSpec | S3Spec;

export interface FileSpec {
  kind: 'file';
  path: string;
}

export interface HttpSpec {
  kind: 'http';
  url: URL;
  /** Credential-free display name (query shown as `?…`). */
  name: string;
}

export interface S3Spec {
  kind: 's3';
  scheme: 's3' | 'r2';
  bucket: string;
  key: string;
  /** Undefined means AWS itself (`https://s3.<region>.amazonaws.com`). */
  endpoint?: string;
  /** Undefined: resolved through the AWS SDK (profile), else us-east-1. */
  region?: string;
  pathStyle: boolean;
  /** Static credentials from options or the environment; undefined: the AWS SDK default provider chain. */
  credentials?: S3Credentials;
  profile?: string;
  /** `s3://bucket/key` / `r2://bucket/key` */
  name: string;
}

/** Options that shape how a spec string is interpreted (CLI flags map onto these). */
export interface SpecOptions {
  /** S3/R2 endpoint URL; overrides the environment and the R2 account endpoint. */
  endpoint?: string;
  /** R2 account id (else R2_ACCOUNT_ID). */
  accountId?: string;
  /** Signing region (else AWS_REGION / AWS_DEFAULT_REGION / profile; `auto` for R2). */
  region?: string;
  /** Path-style URLs. Default: true for R2 and for custom endpoints, false for AWS. */
  pathStyle?: boolean;
  /** AWS profile for the SDK's provider chain (else AWS_PROFILE). */
  profile?: string;
  credentials?: S3Credentials;
  /** Environment to read (default process.env); tests pass their own. */
  env?: Record<string, string | undefined>;
}

const BUCKET = /^[a-z0-9][a-z0-9.\-_]{0,62}$/;
const ACCOUNT_ID = /^[A-Za-z0-9-]{1,64}$/;

export function parseSourceSpec(spec: string, options: SpecOptions = {}): SourceSpec {
  const env = options.env ?? process.env;
  if (spec.length === 0) throw new Error('empty source');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(spec)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'file', path: spec };
  if (scheme === 'file') return { kind: 'file', path: fileURLToPath(spec) };
  if (scheme === 'http' || scheme === 'https') {
    let url: URL;
    try {
      url = new URL(spec);
    } catch {
      throw new Error(`not a valid URL: ${spec.replace(/\?.*$/, '?…')}`);
    }
    return { kind: 'http', url, name: httpDisplayName(url) };
  }
  if (scheme === 's3' || scheme === 'r2') return parseS3Spec(scheme, spec, options, env);
  throw new Error(`unsupported source scheme "${scheme}://" (use r2://, s3://, https://, http:// or a local path)`);
}

function parseS3Spec(
  scheme: 's3' | 'r2',
  spec: string,
  options: SpecOptions,
  env: Record<string, string | undefined>,
): S3Spec {
  const m = /^[a-z0-9]+:\/\/([^/]+)\/(.+)$/i.exec(spec);
  if (!m) throw new Error(`${scheme}:// source must be ${scheme}://bucket/key, got "${spec}"`);
  const bucket = m[1]!;
  const key = m[2]!;
  if (!BUCKET.test(bucket)) throw new Error(`invalid bucket name "${bucket}"`);
  const name = `${scheme}://${bucket}/${key}`;
  const nonEmpty = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);

  let credentials = options.credentials;
  const profile = options.profile ?? nonEmpty(env.AWS_PROFILE);
  if (!credentials && scheme === 'r2') credentials = staticCredentials(env.R2_ACCESS_KEY_ID, env.R2_SECRET_ACCESS_KEY);
  // With a profile asked for, the SDK chain decides; otherwise the environment's keys are its first link anyway.
  if (!credentials && !options.profile) {
    credentials = staticCredentials(env.AWS_ACCESS_KEY_ID, env.AWS_SECRET_ACCESS_KEY, env.AWS_SESSION_TOKEN);
  }
  registerSecret(credentials?.secretAccessKey);
  registerSecret(credentials?.sessionToken);

  if (scheme === 'r2') {
    let endpoint = nonEmpty(options.endpoint);
    if (!endpoint) {
      const accountId = nonEmpty(options.accountId) ?? nonEmpty(env.R2_ACCOUNT_ID);
      if (!accountId) throw new Error(`${name}: R2 needs an account id: pass --account-id or set R2_ACCOUNT_ID`);
      if (!ACCOUNT_ID.test(accountId)) throw new Error(`invalid R2 account id "${accountId}"`);
      endpoint = `https://${accountId}.r2.cloudflarestorage.com`;
    }
    return {
      kind: 's3',
      scheme,
      bucket,
      key,
      endpoint: checkEndpoint(endpoint),
      region: options.region ?? 'auto',
      pathStyle: options.pathStyle ?? true,
      credentials,
      profile,
      name,
    };
  }

  const endpoint = nonEmpty(options.endpoint) ?? nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  return {
    kind: 's3',
    scheme,
    bucket,
    key,
    endpoint: endpoint === undefined ? undefined : checkEndpoint(endpoint),
    region: nonEmpty(options.region) ?? nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION),
    // Custom endpoints (MinIO, s3rver, an IP) rarely resolve virtual hosts.
    pathStyle: options.pathStyle ?? (endpoint !== undefined || env.AWS_S3_FORCE_PATH_STYLE === 'true'),
    credentials,
    profile,
    name,
  };
}

/** `origin/path`, with any query shown as `?…` and user info dropped: safe for logs. */
export function httpDisplayName(url: string | URL): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
}

function staticCredentials(id?: string, secret?: string, token?: string): S3Credentials | undefined {
  if (!id || !secret) return undefined;
  return token ? { accessKeyId: id, secretAccessKey: secret, sessionToken: token } : { accessKeyId: id, secretAccessKey: secret };
}

function checkEndpoint(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new Error(`invalid endpoint URL "${endpoint}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`endpoint must be http(s)://, got "${endpoint}"`);
  if (u.search || u.username || u.password) throw new Error('endpoint must not carry a query or user info');
  return u.toString().replace(/\/$/, '');
}

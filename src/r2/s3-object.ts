import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { registerSecret } from '../util/log.js';
import { RangedObject, type RequestAuthorizer, type TransportOptions } from './ranged-object.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** Returns current credentials; called per request, so it must cache (the SDK's chain does). */
export type CredentialProvider = () => Promise<S3Credentials>;

/** Where an S3/R2 object lives. */
export interface S3Location {
  /** Service endpoint, e.g. `https://<account>.r2.cloudflarestorage.com` or `http://127.0.0.1:4568`. */
  endpoint: string;
  bucket: string;
  key: string;
  /** Signing region (`auto` for R2). */
  region: string;
  /** `endpoint/bucket/key` instead of `bucket.endpoint/key`. */
  pathStyle: boolean;
  /** Credential-free name for messages, e.g. `r2://bucket/key`. */
  name: string;
}

/** The hot path: SigV4-signed ranged GETs on an undici Pool (≈40 µs CPU each vs ≈500 µs through the SDK). */
export function createS3Object(
  location: S3Location,
  credentials: S3Credentials | CredentialProvider,
  options: TransportOptions = {},
): RangedObject {
  const url = objectUrl(location);
  const provider = typeof credentials === 'function' ? credentials : async () => credentials;
  const authorizer = new SigV4Authorizer(url, location.region, provider);
  return new RangedObject({ origin: url.origin, path: url.pathname, name: location.name, authorizer }, options);
}

/** The object's URL: path-style `endpoint/bucket/key` or virtual-hosted `bucket.endpoint/key`. */
export function objectUrl(location: S3Location): URL {
  const endpoint = new URL(location.endpoint);
  const base = endpoint.pathname.replace(/\/+$/, '');
  const key = encodeS3Key(location.key);
  if (location.pathStyle) {
    endpoint.pathname = `${base}/${encodeS3Key(location.bucket)}/${key}`;
  } else {
    endpoint.hostname = `${location.bucket}.${endpoint.hostname}`;
    endpoint.pathname = `${base}/${key}`;
  }
  endpoint.search = '';
  return endpoint;
}

/** S3's canonical URI encoding: every byte but unreserved characters and `/` is %-escaped, once. */
export function encodeS3Key(key: string): string {
  return key
    .split('/')
    .map((part) => encodeURIComponent(part).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** Hop-by-hop headers a proxy may rewrite: sent, not signed (the SDK does not sign them either). */
const UNSIGNED_HEADERS = new Set(['accept-encoding']);

/** Signs each GET with SigV4 (header auth, unsigned payload); the signing key is cached per day by the signer. */
export class SigV4Authorizer implements RequestAuthorizer {
  private readonly signer: SignatureV4;
  private readonly url: URL;
  private readonly host: string;

  constructor(url: URL, region: string, credentials: CredentialProvider) {
    this.url = url;
    this.host = url.host;
    this.signer = new SignatureV4({
      credentials: async () => {
        const c = await credentials();
        registerSecret(c.secretAccessKey);
        registerSecret(c.sessionToken);
        return c;
      },
      region,
      service: 's3',
      sha256: Sha256,
      // S3 signs the path as sent (already escaped once), unlike other services.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  async authorize(method: 'GET', headers: Record<string, string>): Promise<Record<string, string>> {
    const signed = await this.signer.sign({
      method,
      protocol: this.url.protocol,
      hostname: this.url.hostname,
      port: this.url.port ? Number(this.url.port) : undefined,
      path: this.url.pathname,
      query: {},
      headers: { ...headers, host: this.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    }, { unsignableHeaders: UNSIGNED_HEADERS });
    return signed.headers as Record<string, string>;
  }
}

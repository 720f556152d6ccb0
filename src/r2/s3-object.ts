import { registerSecret } from '../util/log.js';
import { RangedObject, type RequestAuthorizer, type TransportOptions } from './ranged-object.js';
import { objectUrl } from './s3-url.js';
import { signRequest } from './sigv4.js';

export { encodeS3Key, objectUrl } from './s3-url.js';

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

/** The hot path: SigV4-signed ranged GETs on a keep-alive pool (a fraction of the SDK's CPU per request). */
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

/** Hop-by-hop headers a proxy may rewrite: sent, not signed (the SDK does not sign them either). */
const UNSIGNED_HEADERS = new Set(['accept-encoding']);

/** Signs each GET with SigV4 (header auth, unsigned payload; src/r2/sigv4.ts). */
export class SigV4Authorizer implements RequestAuthorizer {
  private readonly url: URL;

  constructor(
    url: URL,
    private readonly region: string,
    private readonly credentials: CredentialProvider,
  ) {
    this.url = url;
  }

  async authorize(method: 'GET', headers: Record<string, string>): Promise<Record<string, string>> {
    const c = await this.credentials();
    registerSecret(c.secretAccessKey);
    registerSecret(c.sessionToken);
    return signRequest({
      method,
      host: this.url.host,
      path: this.url.pathname,
      headers,
      credentials: c,
      region: this.region,
      service: 's3',
      unsigned: UNSIGNED_HEADERS,
    });
  }
}

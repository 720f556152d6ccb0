import { hmacSha256, sha256 } from './sha256.js';

/**
 * AWS Signature Version 4 for S3 GETs, header form, unsigned payload: what every ranged GET of a
 * mount carries. Our own because the general signer and its hash cost a mount process about 30 ms of
 * module loading at start-up, and this is all it needs; its hashes are sha256.ts (not node:crypto, for
 * the same reason). Checked against
 * @smithy/signature-v4 in test/r2/sigv4.test.ts and by the R2-mode test server on every request.
 */
export interface SigningCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface SignRequest {
  method: string;
  /** Host header value (host[:port]) and the path exactly as sent (S3 signs it escaped once, as is). */
  host: string;
  path: string;
  /** Headers to send; names are signed lowercased, except those in `unsigned`. */
  headers: Record<string, string>;
  credentials: SigningCredentials;
  region: string;
  service: string;
  now?: Date;
  /** Header names (lowercase) sent but not signed: hop-by-hop ones a proxy may rewrite. */
  unsigned?: ReadonlySet<string>;
}

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const ALGORITHM = 'AWS4-HMAC-SHA256';

/** The headers to send: the given ones plus host, x-amz-date, x-amz-content-sha256, the token and authorization. */
export function signRequest(req: SignRequest): Record<string, string> {
  const amzDate = (req.now ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = {
    ...req.headers,
    host: req.host,
    'x-amz-date': amzDate,
    'x-amz-content-sha256': UNSIGNED_PAYLOAD,
  };
  if (req.credentials.sessionToken) headers['x-amz-security-token'] = req.credentials.sessionToken;

  const signed = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (req.unsigned?.has(lower) || lower === 'authorization') continue;
    signed.set(lower, value.trim().replace(/\s+/g, ' '));
  }
  const names = [...signed.keys()].sort();
  const canonicalRequest = [
    req.method,
    req.path,
    '', // no query string
    ...names.map((n) => `${n}:${signed.get(n)}`),
    '',
    names.join(';'),
    UNSIGNED_PAYLOAD,
  ].join('\n');
  const scope = `${day}/${req.region}/${req.service}/aws4_request`;
  const stringToSign = [ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const key = signingKey(req.credentials.secretAccessKey, day, req.region, req.service);
  const signature = hmacSha256(key, stringToSign).toString('hex');
  headers.authorization = `${ALGORITHM} Credential=${req.credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return headers;
}

function sha256Hex(text: string): string {
  return sha256(text).toString('hex');
}

/** The derived key depends only on (secret, day, region, service): kept for the last combination. */
let cachedKey: { id: string; key: Buffer } | undefined;

function signingKey(secret: string, day: string, region: string, service: string): Buffer {
  const id = `${day}\0${region}\0${service}\0${secret}`;
  if (cachedKey?.id === id) return cachedKey.key;
  const hmac = (key: string | Buffer, data: string) => hmacSha256(key, data);
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  cachedKey = { id, key };
  return key;
}

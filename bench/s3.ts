import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { request, type Dispatcher } from 'undici';

/**
 * The bench's own small S3 client: SigV4-signed requests with undici, so peer B's downloader and the
 * uploads do not depend on the code under test.
 */

export const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
export const REGION = 'us-east-1';

const signer = new SignatureV4({
  credentials: CREDENTIALS,
  region: REGION,
  service: 's3',
  sha256: Sha256,
  uriEscapePath: false,
});

export async function signedHeaders(
  method: string,
  endpoint: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Record<string, string>> {
  const url = new URL(endpoint);
  const signed = await signer.sign({
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path,
    query: {},
    headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
  });
  return signed.headers as Record<string, string>;
}

export function objectPath(bucket: string, key: string): string {
  return `/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** Size of an object, or undefined if it is not there. */
export async function headObject(endpoint: string, bucket: string, key: string): Promise<number | undefined> {
  const path = objectPath(bucket, key);
  const res = await request(new URL(path, endpoint), {
    method: 'HEAD',
    headers: await signedHeaders('HEAD', endpoint, path),
  });
  await res.body.dump();
  if (res.statusCode === 404) return undefined;
  if (res.statusCode !== 200) throw new Error(`HEAD ${path}: HTTP ${res.statusCode}`);
  return Number(res.headers['content-length']);
}

/** Streams a local file into an object (one PUT; the local server takes any size). */
export async function uploadFile(endpoint: string, bucket: string, key: string, file: string): Promise<void> {
  const path = objectPath(bucket, key);
  const size = (await stat(file)).size;
  const headers = await signedHeaders('PUT', endpoint, path, {
    'content-length': String(size),
    'content-type': 'application/octet-stream',
  });
  const res = await request(new URL(path, endpoint), { method: 'PUT', headers, body: createReadStream(file) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`PUT ${path}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
}

/** One small object from memory (meta.json). */
export async function putObject(endpoint: string, bucket: string, key: string, body: string): Promise<void> {
  const path = objectPath(bucket, key);
  const data = Buffer.from(body);
  const headers = await signedHeaders('PUT', endpoint, path, {
    'content-length': String(data.length),
    'content-type': 'application/json',
  });
  const res = await request(new URL(path, endpoint), { method: 'PUT', headers, body: data });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`PUT ${path}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
}

/** Deletes an object (absent is fine). */
export async function deleteObject(endpoint: string, bucket: string, key: string): Promise<void> {
  const path = objectPath(bucket, key);
  const res = await request(new URL(path, endpoint), {
    method: 'DELETE',
    headers: await signedHeaders('DELETE', endpoint, path),
  });
  const text = await res.body.text();
  if (res.statusCode !== 204 && res.statusCode !== 200 && res.statusCode !== 404)
    throw new Error(`DELETE ${path}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
}

/** One signed ranged GET through a dispatcher (peer B's downloader). */
export async function getRange(
  dispatcher: Dispatcher,
  endpoint: string,
  bucket: string,
  key: string,
  start: number,
  endInclusive: number,
): Promise<Dispatcher.ResponseData> {
  const path = objectPath(bucket, key);
  const headers = await signedHeaders('GET', endpoint, path, { range: `bytes=${start}-${endInclusive}` });
  return dispatcher.request({ origin: endpoint, path, method: 'GET', headers });
}

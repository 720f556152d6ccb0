import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { createS3Object, objectUrl, type S3Location } from '../../src/r2/s3-object.js';
import type { RangedObject, TransportOptions } from '../../src/r2/ranged-object.js';
import type { S3TestServer } from '../../src/testing/s3-server.js';

export const BUCKET = 'images';

export { patternBytes } from '../helpers/bytes.js';

export function location(server: S3TestServer, key: string, bucket = BUCKET): S3Location {
  return { endpoint: server.endpoint, bucket, key, region: server.region, pathStyle: true, name: `s3://${bucket}/${key}` };
}

export function s3Object(
  server: S3TestServer,
  key: string,
  options: TransportOptions & { secret?: string; accessKeyId?: string; bucket?: string } = {},
): RangedObject {
  return createS3Object(
    location(server, key, options.bucket),
    { accessKeyId: options.accessKeyId ?? server.accessKeyId, secretAccessKey: options.secret ?? server.secretAccessKey },
    options,
  );
}

/** A presigned GET URL, as `aws s3 presign` makes it (unsigned payload, host signed). */
export async function presignedUrl(
  server: S3TestServer,
  key: string,
  options: { expiresIn?: number; signingDate?: Date; secret?: string } = {},
): Promise<string> {
  const url = objectUrl(location(server, key));
  const signer = new SignatureV4({
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: options.secret ?? server.secretAccessKey },
    region: server.region,
    service: 's3',
    sha256: Sha256,
    uriEscapePath: false,
  });
  const signed = await signer.presign(
    {
      method: 'GET',
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query: {},
      headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    },
    {
      expiresIn: options.expiresIn ?? 900,
      signingDate: options.signingDate,
      unsignableHeaders: new Set(['x-amz-content-sha256']),
      unhoistableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
  const q = new URLSearchParams(signed.query as Record<string, string>);
  return `${url.origin}${url.pathname}?${q.toString()}`;
}

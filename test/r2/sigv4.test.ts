/**
 * Our SigV4 signer (src/r2/sigv4.ts) against @smithy/signature-v4, the AWS SDK's own: the same
 * Authorization for the same request, across regions, session tokens, odd keys and header spacing.
 * (The R2-mode test server also verifies every signed GET the other tests make.)
 */
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { encodeS3Key } from '../../src/r2/s3-object.js';
import { signRequest, UNSIGNED_PAYLOAD } from '../../src/r2/sigv4.js';

const NOW = new Date('2026-11-25T06:51:07.123Z');
const UNSIGNED = new Set(['accept-encoding']);

async function smithy(host: string, path: string, headers: Record<string, string>, creds: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }, region: string) {
  const signer = new SignatureV4({ credentials: creds, region, service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false });
  const [hostname, port] = host.split(':');
  const signed = await signer.sign(
    {
      method: 'GET',
      protocol: 'https:',
      hostname: hostname!,
      port: port ? Number(port) : undefined,
      path,
      query: {},
      headers: { ...headers, host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD },
    },
    { signingDate: NOW, unsignableHeaders: UNSIGNED },
  );
  return signed.headers as Record<string, string>;
}

const cases = [
  { what: 'R2, a range', host: 'acct.r2.cloudflarestorage.com', key: 'backups/1/data.sqsh', region: 'auto', headers: { range: 'bytes=0-65535' } },
  { what: 'path style, port, If-Match', host: '127.0.0.1:4568', key: 'bucket/backups/x y/data.sqsh', region: 'us-east-1', headers: { range: 'bytes=10-20', 'if-match': '"abc"' } },
  { what: 'a session token', host: 'b.s3.eu-west-1.amazonaws.com', key: 'k', region: 'eu-west-1', headers: { range: 'bytes=0-0' }, token: 'FQoGZXIvYXdzE//token+/=' },
  { what: 'odd key bytes', host: 'b.s3.amazonaws.com', key: "a/ü ñ/(x)*'!~.sqsh", region: 'us-east-1', headers: { Range: 'bytes=5-9' } },
  { what: 'spaces in a value, an unsigned header', host: 'h:9000', key: 'k', region: 'r', headers: { range: ' bytes=1-2 ', 'x-custom': 'a   b', 'accept-encoding': 'identity' } },
];

describe('SigV4 as the AWS SDK signs it', () => {
  it.each(cases)('$what', async ({ host, key, region, headers, token }) => {
    const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: token };
    const path = `/${encodeS3Key(key)}`;
    const ours = signRequest({ method: 'GET', host, path, headers, credentials: creds, region, service: 's3', now: NOW, unsigned: UNSIGNED });
    const theirs = await smithy(host, path, headers, creds, region);
    expect(ours.authorization).toBe(theirs.authorization);
    expect(ours['x-amz-date']).toBe(theirs['x-amz-date']);
    expect(ours['x-amz-security-token']).toBe(theirs['x-amz-security-token']);
  });

  it('a different secret, day or region gives a different signature (the derived key is not reused)', () => {
    const base = { method: 'GET', host: 'h', path: '/k', headers: { range: 'bytes=0-1' }, region: 'auto', service: 's3', now: NOW };
    const creds = { accessKeyId: 'A', secretAccessKey: 'one' };
    const sig = (r: Partial<typeof base> & { credentials?: typeof creds }) =>
      signRequest({ ...base, credentials: creds, ...r }).authorization;
    const first = sig({});
    expect(sig({ credentials: { accessKeyId: 'A', secretAccessKey: 'two' } })).not.toBe(first);
    expect(sig({ now: new Date('2026-11-26T00:00:00Z') })).not.toBe(first);
    expect(sig({ region: 'us-east-1' })).not.toBe(first);
    expect(sig({})).toBe(first);
  });
});

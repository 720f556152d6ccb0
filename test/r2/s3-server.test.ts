import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { objectUrl, SigV4Authorizer } from '../../src/r2/s3-object.js';
import { type S3ServerMode, type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { BUCKET, location, patternBytes } from './transport-helpers.js';

/**
 * The test server itself, spoken to with raw signed requests (no transport checks in between): s3rver's
 * known faults stay visible in `s3rver` mode, the R2 front middleware fixes them in `r2` mode, and the
 * fault plan does what it says.
 */
const SIZE = 5000;
const data = patternBytes(SIZE, 21);

async function rawGet(server: S3TestServer, key: string, headers: Record<string, string> = {}, secret?: string) {
  const url = objectUrl(location(server, key));
  const auth = new SigV4Authorizer(url, server.region, async () => ({
    accessKeyId: server.accessKeyId,
    secretAccessKey: secret ?? server.secretAccessKey,
  }));
  const pool = new Pool(url.origin, { connections: 1 });
  try {
    const res = await pool.request({ path: url.pathname, method: 'GET', headers: await auth.authorize('GET', headers) });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  } catch (e) {
    return { status: 0, headers: {}, body: Buffer.alloc(0), error: e as Error & { code?: string } };
  } finally {
    await pool.destroy();
  }
}

describe.each(['s3rver', 'r2'] as S3ServerMode[])('test S3 server in %s mode', (mode) => {
  let server: S3TestServer;
  let etag: string;
  beforeAll(async () => {
    server = await startS3Server({ mode, buckets: [BUCKET] });
    etag = await server.putObject(BUCKET, 'obj', data);
  });
  afterAll(async () => {
    await server.close();
  });

  test('binds 127.0.0.1 on a free port and serves a put object with its ETag', async () => {
    expect(server.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(server.port).toBeGreaterThan(0);
    const r = await rawGet(server, 'obj');
    expect(r.status).toBe(200);
    expect(r.headers.etag).toBe(etag);
    expect(Buffer.compare(r.body, data)).toBe(0);
    expect(server.requests.at(-1)).toMatchObject({ method: 'GET', path: `/${BUCKET}/obj`, status: 200 });
  });

  test('an explicit range is right in both modes', async () => {
    const r = await rawGet(server, 'obj', { range: 'bytes=10-19' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 10-19/${SIZE}`);
    expect(Buffer.compare(r.body, data.subarray(10, 20))).toBe(0);
  });

  test(`bytes=0-0 is ${mode === 'r2' ? 'one byte' : 'answered with the whole object (s3rver fault)'}`, async () => {
    const r = await rawGet(server, 'obj', { range: 'bytes=0-0' });
    if (mode === 'r2') {
      expect(r.status).toBe(206);
      expect(r.headers['content-range']).toBe(`bytes 0-0/${SIZE}`);
      expect(r.body).toHaveLength(1);
    } else {
      expect(r.body.length).toBe(SIZE);
    }
  });

  test(`a suffix range is ${mode === 'r2' ? 'the last bytes' : 'answered with the first bytes (s3rver fault)'}`, async () => {
    const r = await rawGet(server, 'obj', { range: 'bytes=-100' });
    expect(r.status).toBe(206);
    if (mode === 'r2') {
      expect(r.headers['content-range']).toBe(`bytes ${SIZE - 100}-${SIZE - 1}/${SIZE}`);
      expect(Buffer.compare(r.body, data.subarray(SIZE - 100))).toBe(0);
    } else {
      expect(r.headers['content-range']).toBe(`bytes 0-100/${SIZE}`);
    }
  });

  test(`If-Match with another ETag is ${mode === 'r2' ? '412' : 'ignored (s3rver fault)'}`, async () => {
    const r = await rawGet(server, 'obj', { range: 'bytes=0-9', 'if-match': '"0123456789abcdef0123456789abcdef"' });
    expect(r.status).toBe(mode === 'r2' ? 412 : 206);
    if (mode === 'r2') expect(r.body.toString()).toContain('<Code>PreconditionFailed</Code>');
    const ok = await rawGet(server, 'obj', { range: 'bytes=0-9', 'if-match': etag });
    expect(ok.status).toBe(206);
  });

  test.runIf(mode === 'r2')('a range past the end is 416 with the size', async () => {
    const r = await rawGet(server, 'obj', { range: `bytes=${SIZE}-${SIZE + 10}` });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe(`bytes */${SIZE}`);
  });

  test(`a wrong secret is ${mode === 'r2' ? 'refused (SigV4 verified)' : 'accepted (s3rver checks only the key id)'}`, async () => {
    const r = await rawGet(server, 'obj', { range: 'bytes=0-9' }, 'wrong-secret-value');
    if (mode === 'r2') {
      expect(r.status).toBe(403);
      expect(r.body.toString()).toContain('<Code>SignatureDoesNotMatch</Code>');
    } else {
      expect(r.status).toBe(206);
    }
  });

  test('faults are injected as planned, once each, only for matching requests', async () => {
    server.injectFault({ fault: { kind: 'status', status: 503, code: 'SlowDown' }, match: { key: 'obj', range: /^bytes=1-/ } });
    server.injectFault({ fault: { kind: 'truncate', bytes: 100 }, match: { key: 'obj' } });
    server.injectFault({ fault: { kind: 'reset' }, match: { key: 'obj' } });

    const slow = await rawGet(server, 'obj', { range: 'bytes=1-10' });
    expect(slow.status).toBe(503);
    expect(slow.body.toString()).toContain('<Code>SlowDown</Code>');

    const truncated = await rawGet(server, 'obj', { range: 'bytes=0-999' });
    expect(truncated.error ?? truncated.body.length < 1000).toBeTruthy();

    const reset = await rawGet(server, 'obj', { range: 'bytes=0-9' });
    expect(reset.status).toBe(0);

    const fine = await rawGet(server, 'obj', { range: 'bytes=1-10' });
    expect(fine.status).toBe(206);
    expect(server.requests.slice(-4).map((r) => r.fault)).toEqual(['status', 'truncate', 'reset', undefined]);
  });

  test('replacing an object changes its ETag and content; objectGets counts per key', async () => {
    const other = patternBytes(SIZE, 22);
    const newEtag = await server.putObject(BUCKET, 'replaced', data);
    const again = await server.putObject(BUCKET, 'replaced', other);
    expect(again).not.toBe(newEtag);
    const r = await rawGet(server, 'replaced', { range: 'bytes=0-99' });
    expect(r.headers.etag).toBe(again);
    expect(Buffer.compare(r.body, other.subarray(0, 100))).toBe(0);
    expect(server.objectGets('replaced')).toHaveLength(1);
  });
});

import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { SourceError } from '../../src/r2/errors.js';
import { createHttpObject } from '../../src/r2/http-object.js';
import type { RangedObject } from '../../src/r2/ranged-object.js';
import { type S3ServerMode, type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { BUCKET, patternBytes, presignedUrl, s3Object } from './transport-helpers.js';

const SIZE = 300_000;
const KEY = 'dir/image one.sqsh';

async function caught(p: Promise<unknown>): Promise<SourceError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(SourceError);
  return e as SourceError;
}

describe.each(['s3rver', 'r2'] as S3ServerMode[])('RemoteObject over SigV4 against %s', (mode) => {
  let server: S3TestServer;
  const data = patternBytes(SIZE, 7);
  const opened: RangedObject[] = [];
  const track = (o: RangedObject) => {
    opened.push(o);
    return o;
  };

  beforeAll(async () => {
    server = await startS3Server({ mode, buckets: [BUCKET] });
    await server.putObject(BUCKET, KEY, data);
  });
  afterAll(async () => {
    await server?.close();
  });
  afterEach(async () => {
    server.clearFaults();
    await Promise.all(opened.splice(0).map((o) => o.close()));
    await server.putObject(BUCKET, KEY, data);
    server.requests.length = 0;
  });

  test('open returns head, tail, size and ETag; the suffix fallback happens only where the server is wrong', async () => {
    await server.putObject(BUCKET, KEY, data);
    server.requests.length = 0;
    const obj = track(s3Object(server, KEY));
    const { info, head, tail } = await obj.open(4096, 65536);
    expect(info.size).toBe(SIZE);
    expect(info.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(Buffer.compare(head, data.subarray(0, 4096))).toBe(0);
    expect(Buffer.compare(tail, data.subarray(SIZE - 65536))).toBe(0);
    const gets = server.objectGets(KEY);
    expect(gets.slice(0, 2).map((r) => r.range).sort()).toEqual(['bytes=-65536', 'bytes=0-4095']);
    if (mode === 'r2') {
      expect(gets).toHaveLength(2);
    } else {
      // s3rver sent the first bytes for the suffix range; we saw it and asked the explicit span.
      expect(gets).toHaveLength(3);
      expect(gets[2]!.range).toBe(`bytes=${SIZE - 65536}-${SIZE - 1}`);
      expect(gets[2]!.ifMatch).toBe(info.etag);
    }
    expect(obj.stats().requests).toBe(gets.length);
  });

  test('open issues its head and tail GETs in parallel (one round trip)', async () => {
    server.setLatency(150);
    try {
      server.requests.length = 0;
      const obj = track(s3Object(server, KEY));
      await obj.open(4096, 4096);
      const [first, second] = server.objectGets(KEY);
      expect(first!.concurrent).toBe(1);
      expect(second!.concurrent).toBe(2); // arrived while the first was still being answered
    } finally {
      server.setLatency(0);
    }
  });

  test('open of an object smaller than head and tail returns it whole, twice', async () => {
    const small = patternBytes(1000, 3);
    await server.putObject(BUCKET, 'small', small);
    const obj = track(s3Object(server, 'small'));
    const { info, head, tail } = await obj.open(4096, 8192);
    expect(info.size).toBe(1000);
    expect(Buffer.compare(head, small)).toBe(0);
    expect(Buffer.compare(tail, small)).toBe(0);
  });

  test('fetch returns exactly the bytes asked, single bytes at both ends included, with If-Match', async () => {
    const obj = track(s3Object(server, KEY));
    await obj.open(1, 1);
    const cases: Array<[number, number]> = [
      [0, 1],
      [SIZE - 1, 1],
      [0, SIZE],
      [12345, 1],
      [4095, 2],
      [100_000, 65_536],
      [SIZE - 10, 10],
    ];
    for (const [offset, length] of cases) {
      const got = await obj.fetch(offset, length);
      expect(got.length).toBe(length);
      expect(Buffer.compare(Buffer.from(got), data.subarray(offset, offset + length))).toBe(0);
    }
    expect(await obj.fetch(5, 0)).toHaveLength(0);
    await expect(obj.fetch(SIZE - 1, 2)).rejects.toThrow(RangeError);
    const etag = obj.objectInfo!.etag;
    expect(server.objectGets(KEY).slice(2).every((r) => r.ifMatch === etag)).toBe(true);
    const s = obj.stats();
    expect(Object.values(s.latencyMs).reduce((a, b) => a + b, 0)).toBe(s.requests);
    expect(s.inFlight).toBe(0);
  });

  test('fetchInto writes one GET straight into several buffers, across their boundaries', async () => {
    const obj = track(s3Object(server, KEY));
    await obj.open(1, 1);
    server.requests.length = 0;
    const sizes = [65_536, 1, 0, 70_000, 3, 65_536];
    const total = sizes.reduce((a, b) => a + b, 0);
    const targets = sizes.map((n) => Buffer.alloc(n, 0xee));
    await obj.fetchInto(1000, targets);
    expect(Buffer.compare(Buffer.concat(targets), data.subarray(1000, 1000 + total))).toBe(0);
    expect(server.objectGets(KEY).map((r) => r.range)).toEqual([`bytes=1000-${1000 + total - 1}`]);
    // One byte in all (the widened single-byte path), and nothing at all.
    const one = [Buffer.alloc(0), Buffer.alloc(1)];
    await obj.fetchInto(SIZE - 1, one);
    expect(one[1]![0]).toBe(data[SIZE - 1]);
    await obj.fetchInto(5, [Buffer.alloc(0)]);
    await expect(obj.fetchInto(SIZE - 1, [Buffer.alloc(2)])).rejects.toThrow(RangeError);
  });

  test('fetchInto after a truncated body and a reset retries and leaves the right bytes in every buffer', async () => {
    const obj = track(s3Object(server, KEY, { retry: { baseDelayMs: 5 } }));
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'truncate', bytes: 70_000 }, match: { key: KEY } });
    server.injectFault({ fault: { kind: 'reset' }, match: { key: KEY } });
    const targets = [Buffer.alloc(65_536), Buffer.alloc(65_536), Buffer.alloc(10_000)];
    await obj.fetchInto(20_000, targets);
    expect(Buffer.compare(Buffer.concat(targets), data.subarray(20_000, 20_000 + 141_072))).toBe(0);
    expect(obj.stats().retries).toBe(2);
  });

  test('a missing object fails at once with 404 NoSuchKey', async () => {
    const obj = track(s3Object(server, 'no/such/key'));
    const e = await caught(obj.open(4096, 4096));
    expect(e.status).toBe(404);
    expect(e.code).toBe('NoSuchKey');
    expect(e.message).toContain('s3://images/no/such/key');
    expect(e.message).toContain('The specified key does not exist');
    expect(obj.stats().retries).toBe(0);
    expect(server.objectGets('no/such/key')).toHaveLength(2);
  });

  test('a missing bucket fails at once with 404 NoSuchBucket', async () => {
    const obj = track(s3Object(server, KEY, { bucket: 'nobucket' }));
    const e = await caught(obj.open(4096, 4096));
    expect(e.status).toBe(404);
    expect(e.code).toBe('NoSuchBucket');
    expect(obj.stats().retries).toBe(0);
  });

  test('an unknown access key fails at once with 403 InvalidAccessKeyId', async () => {
    const obj = track(s3Object(server, KEY, { accessKeyId: 'AKIDUNKNOWN' }));
    const e = await caught(obj.open(4096, 4096));
    expect(e.status).toBe(403);
    expect(e.code).toBe('InvalidAccessKeyId');
    expect(obj.stats().retries).toBe(0);
  });

  test.runIf(mode === 'r2')('a wrong secret fails at once with 403 SignatureDoesNotMatch (R2 verifies SigV4)', async () => {
    const obj = track(s3Object(server, KEY, { secret: 'not-the-secret-0123456789' }));
    const e = await caught(obj.open(4096, 4096));
    expect(e.status).toBe(403);
    expect(e.code).toBe('SignatureDoesNotMatch');
    expect(obj.stats().retries).toBe(0);
  });

  test('an object replaced after open is an error, never mixed bytes; the same for a new size', async () => {
    const obj = track(s3Object(server, KEY));
    await obj.open(4096, 4096);
    expect(Buffer.compare(Buffer.from(await obj.fetch(1000, 5000)), data.subarray(1000, 6000))).toBe(0);
    await server.putObject(BUCKET, KEY, patternBytes(SIZE, 99));
    const e = await caught(obj.fetch(1000, 5000));
    expect(e.code).toBe('ObjectChanged');
    expect(e.message).toContain('object changed since it was opened');
    const last = server.objectGets(KEY).at(-1)!;
    // R2 refuses on If-Match (412); s3rver ignores it and the ETag comparison catches the new object.
    expect(last.status).toBe(mode === 'r2' ? 412 : 206);
    expect(obj.stats().retries).toBe(0);

    await server.putObject(BUCKET, KEY, patternBytes(SIZE + 10, 5));
    expect((await caught(obj.fetch(0, 100))).code).toBe('ObjectChanged');
  });

  test('an object deleted after open fails with 404, not retried', async () => {
    await server.putObject(BUCKET, 'doomed', data.subarray(0, 10_000));
    const obj = track(s3Object(server, 'doomed'));
    await obj.open(1024, 1024);
    await server.deleteObject(BUCKET, 'doomed');
    const e = await caught(obj.fetch(0, 100));
    expect(e.status).toBe(404);
    expect(obj.stats().retries).toBe(0);
  });

  test('500, 503 SlowDown, 429, a reset and a truncated body are retried, then the bytes are right', async () => {
    const obj = track(s3Object(server, KEY, { retry: { baseDelayMs: 5 } }));
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'status', status: 500 }, match: { key: KEY } });
    server.injectFault({ fault: { kind: 'status', status: 503, code: 'SlowDown', message: 'Reduce your request rate.' }, match: { key: KEY } });
    server.injectFault({ fault: { kind: 'status', status: 429, code: 'TooManyRequests' }, match: { key: KEY } });
    server.injectFault({ fault: { kind: 'reset' }, match: { key: KEY } });
    server.injectFault({ fault: { kind: 'truncate', bytes: 1000 }, match: { key: KEY } });
    const got = await obj.fetch(50_000, 100_000);
    expect(Buffer.compare(Buffer.from(got), data.subarray(50_000, 150_000))).toBe(0);
    const faults = server.objectGets(KEY).map((r) => r.fault);
    expect(faults.filter(Boolean)).toEqual(['status', 'status', 'status', 'reset', 'truncate']);
    expect(obj.stats().retries).toBe(5);
    expect(obj.stats().failures).toBe(0);
  });

  test('429 and 5xx beyond the attempt budget fail with RetriesExhausted naming the last error', async () => {
    const obj = track(s3Object(server, KEY, { retry: { baseDelayMs: 1, maxAttempts: 3 } }));
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'status', status: 503, code: 'SlowDown' }, times: 3, match: { key: KEY } });
    const e = await caught(obj.fetch(0, 10));
    expect(e.code).toBe('RetriesExhausted');
    expect(e.status).toBe(503);
    expect(e.message).toContain('SlowDown');
    expect(e.message).toContain('3 attempts');
    expect(obj.stats().retries).toBe(2);
    // The object still works afterwards.
    expect(Buffer.compare(Buffer.from(await obj.fetch(0, 10)), data.subarray(0, 10))).toBe(0);
  });

  // A 300 ms timeout fires within 0.3-1.5 s on a loaded machine.
  const timeouts = { headersTimeoutMs: 300, idleTimeoutMs: 300 };

  test('a response stalled before its headers or mid-body times out and is retried transparently', async () => {
    const obj = track(s3Object(server, KEY, { ...timeouts, retry: { baseDelayMs: 10, totalTimeoutMs: 10_000 } }));
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'stall', ms: 5000 }, match: { key: KEY } });
    server.injectFault({ fault: { kind: 'stall', ms: 5000, afterBytes: 3000 }, match: { key: KEY } });
    const ok = await obj.fetch(20_000, 50_000);
    expect(Buffer.compare(Buffer.from(ok), data.subarray(20_000, 70_000))).toBe(0);
    expect(obj.stats().retries).toBe(2);
  });

  test('past the total time bound a stalled read fails clearly, and later reads of the object work', async () => {
    const obj = track(s3Object(server, KEY, { ...timeouts, retry: { baseDelayMs: 10, totalTimeoutMs: 2500 } }));
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'stall', ms: 5000 }, times: Infinity, match: { key: KEY } });
    const started = Date.now();
    const e = await caught(obj.fetch(0, 4096));
    const elapsed = Date.now() - started;
    expect(e.code).toBe('RetriesExhausted');
    expect(e.message).toMatch(/timed out/);
    expect(e.message).toContain('2500 ms');
    expect(elapsed).toBeLessThan(4000);
    expect(elapsed).toBeGreaterThanOrEqual(1000);

    server.clearFaults();
    const later = await obj.fetch(0, 4096);
    expect(Buffer.compare(Buffer.from(later), data.subarray(0, 4096))).toBe(0);
  });

  test('a caller abort stops the read without retries', async () => {
    const obj = track(s3Object(server, KEY, { retry: { baseDelayMs: 10 } }));
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'stall', ms: 5000 }, match: { key: KEY } });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const e = await caught(obj.fetch(0, 4096, ac.signal));
    expect(e.code).toBe('Aborted');
    expect(obj.stats().retries).toBe(0);
  });

  test('close during a stalled read ends it at once, without retries', async () => {
    const obj = s3Object(server, KEY, { retry: { baseDelayMs: 10 } });
    await obj.open(4096, 4096);
    server.injectFault({ fault: { kind: 'stall', ms: 5000 }, match: { key: KEY } });
    const pending = caught(obj.fetch(0, 4096));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await obj.close();
    const e = await pending;
    expect(e.code).toBe('Aborted');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(obj.stats().retries).toBe(0);
    await expect(obj.fetch(0, 1)).rejects.toThrow(/closed/);
  });

  test('a presigned https-style URL is read by plain ranged GETs', async () => {
    const url = await presignedUrl(server, KEY);
    const obj = track(createHttpObject(url));
    expect(obj.name).toBe(`${server.endpoint}/${BUCKET}/dir/image%20one.sqsh?…`);
    const { info, head, tail } = await obj.open(512, 512);
    expect(info.size).toBe(SIZE);
    expect(Buffer.compare(head, data.subarray(0, 512))).toBe(0);
    expect(Buffer.compare(tail, data.subarray(SIZE - 512))).toBe(0);
    const mid = await obj.fetch(77_777, 10_000);
    expect(Buffer.compare(Buffer.from(mid), data.subarray(77_777, 87_777))).toBe(0);
  });

  test.runIf(mode === 'r2')('a tampered or expired presigned URL fails with 403 and its message hides the query', async () => {
    const url = new URL(await presignedUrl(server, KEY));
    const sig = url.searchParams.get('X-Amz-Signature')!;
    url.searchParams.set('X-Amz-Signature', sig.replace(/^./, sig[0] === 'a' ? 'b' : 'a'));
    const tampered = track(createHttpObject(url));
    const e = await caught(tampered.open(512, 512));
    expect(e.status).toBe(403);
    expect(e.code).toBe('SignatureDoesNotMatch');
    expect(e.message).not.toContain(sig.slice(8));
    expect(e.message).not.toContain('X-Amz-Credential');

    const expired = track(
      createHttpObject(await presignedUrl(server, KEY, { expiresIn: 60, signingDate: new Date(Date.now() - 3600_000) })),
    );
    const e2 = await caught(expired.open(512, 512));
    expect(e2.status).toBe(403);
    expect(e2.message).toContain('expired');
  });
});

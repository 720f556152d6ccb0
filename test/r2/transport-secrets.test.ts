import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createHttpObject } from '../../src/r2/http-object.js';
import { openSource } from '../../src/r2/open-source.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { configureLogging, describeError } from '../../src/util/log.js';
import { BUCKET, patternBytes, presignedUrl, s3Object } from './transport-helpers.js';

const WRONG_SECRET = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY';
let server: S3TestServer;
let dir: string;
let logFile: string;

beforeAll(async () => {
  server = await startS3Server({ mode: 'r2', buckets: [BUCKET] });
  await server.putObject(BUCKET, 'img', patternBytes(50_000));
  dir = await mkdtemp(join(tmpdir(), 'transport-secrets-'));
  logFile = join(dir, 'log.txt');
  configureLogging({ level: 'debug', file: logFile });
});
afterAll(async () => {
  configureLogging({ level: 'warn', file: '' });
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** Everything a user could see of an error: message, stack, cause chain, JSON. */
function exposed(e: unknown): string {
  const parts = [describeError(e)];
  let cur: unknown = e;
  for (let i = 0; cur && i < 6; i++) {
    const err = cur as Error & { cause?: unknown };
    parts.push(String(err.message), String(err.stack), JSON.stringify(err));
    cur = err.cause;
  }
  return parts.join('\n');
}

test('secrets, signatures, Authorization headers and presigned queries appear in no log line or error', async () => {
  const seen: string[] = [];
  const capture = async (p: Promise<unknown>) => {
    await p.then(
      () => undefined,
      (e: unknown) => seen.push(exposed(e)),
    );
  };

  // A wrong secret (403 from the R2-mode verifier).
  const wrong = s3Object(server, 'img', { secret: WRONG_SECRET });
  await capture(wrong.open(1024, 1024));
  await wrong.close();

  // Retries and a final failure on a signed object (debug logs every retry).
  const signed = s3Object(server, 'img', { retry: { baseDelayMs: 1, maxAttempts: 3 } });
  await signed.open(1024, 1024);
  server.injectFault({ fault: { kind: 'status', status: 500 }, times: 3, match: { key: 'img' } });
  await capture(signed.fetch(0, 100));
  await signed.close();

  // A presigned URL: retried, then tampered (403), then expired.
  const url = await presignedUrl(server, 'img');
  const signature = new URL(url).searchParams.get('X-Amz-Signature')!;
  const credential = new URL(url).searchParams.get('X-Amz-Credential')!;
  const presigned = createHttpObject(url, { retry: { baseDelayMs: 1, maxAttempts: 2 } });
  server.injectFault({ fault: { kind: 'status', status: 503, code: 'SlowDown' }, times: 4, match: { key: 'img' } });
  await capture(presigned.open(1024, 1024));
  await presigned.close();
  const tampered = new URL(url);
  tampered.searchParams.set('X-Amz-Signature', '0'.repeat(64));
  const bad = createHttpObject(tampered);
  await capture(bad.open(1024, 1024));
  await bad.close();
  await capture((async () => createHttpObject(`not a url?X-Amz-Signature=${signature}`).open(1, 1))());

  // openSource with credentials from the environment.
  await capture(
    openSource('r2://images/img', {
      endpoint: server.endpoint,
      env: { R2_ACCESS_KEY_ID: server.accessKeyId, R2_SECRET_ACCESS_KEY: WRONG_SECRET },
    }),
  );

  const log = await readFile(logFile, 'utf8');
  expect(seen.length).toBeGreaterThanOrEqual(6);
  expect(log).toContain('retry'); // the debug lines were written
  const everything = `${log}\n${seen.join('\n')}`;
  expect(everything).toContain('SignatureDoesNotMatch');
  expect(everything).not.toContain(WRONG_SECRET);
  expect(everything).not.toContain(signature);
  expect(everything).not.toContain(credential);
  expect(everything).not.toMatch(/AWS4-HMAC-SHA256 Credential/);
  expect(everything).not.toMatch(/Signature=[0-9a-f]{16}/);
  expect(everything).not.toMatch(/X-Amz-Signature=(?!REDACTED)/);
});

import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openRemoteEarly, openSource } from '../../src/r2/open-source.js';
import { parseSourceSpec } from '../../src/r2/spec.js';
import { type S3ServerMode, type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { BUCKET, patternBytes, presignedUrl } from './transport-helpers.js';

describe('parseSourceSpec', () => {
  const env = {};

  test('r2:// takes the endpoint from --account-id or R2_ACCOUNT_ID, region auto, path style, R2_ keys', () => {
    const s = parseSourceSpec('r2://backups/a/b/data.sqsh', {
      env: { R2_ACCOUNT_ID: 'abc123', R2_ACCESS_KEY_ID: 'rk', R2_SECRET_ACCESS_KEY: 'rsecret', AWS_ACCESS_KEY_ID: 'ak' },
    });
    expect(s).toMatchObject({
      kind: 's3',
      scheme: 'r2',
      bucket: 'backups',
      key: 'a/b/data.sqsh',
      endpoint: 'https://abc123.r2.cloudflarestorage.com',
      region: 'auto',
      pathStyle: true,
      credentials: { accessKeyId: 'rk', secretAccessKey: 'rsecret' },
      name: 'r2://backups/a/b/data.sqsh',
    });
    expect(parseSourceSpec('r2://b/k', { accountId: 'fromflag', env: { R2_ACCOUNT_ID: 'fromenv' } })).toMatchObject({
      endpoint: 'https://fromflag.r2.cloudflarestorage.com',
    });
  });

  test('r2:// falls back to the AWS key names, and says what is missing without an account id', () => {
    const s = parseSourceSpec('r2://b/k', {
      env: { R2_ACCOUNT_ID: 'x', AWS_ACCESS_KEY_ID: 'ak', AWS_SECRET_ACCESS_KEY: 'as', AWS_SESSION_TOKEN: 'tok' },
    });
    expect(s).toMatchObject({ credentials: { accessKeyId: 'ak', secretAccessKey: 'as', sessionToken: 'tok' } });
    expect(() => parseSourceSpec('r2://b/k', { env })).toThrow(/--account-id or set R2_ACCOUNT_ID/);
    expect(() => parseSourceSpec('r2://b/k', { accountId: 'evil.com/x', env })).toThrow(/invalid R2 account id/);
  });

  test('s3:// endpoint precedence: option, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS (virtual hosted)', () => {
    const e = { AWS_ENDPOINT_URL_S3: 'http://s3only:9000', AWS_ENDPOINT_URL: 'http://general:9000' };
    expect(parseSourceSpec('s3://b/k', { endpoint: 'http://flag:1', env: e })).toMatchObject({ endpoint: 'http://flag:1', pathStyle: true });
    expect(parseSourceSpec('s3://b/k', { env: e })).toMatchObject({ endpoint: 'http://s3only:9000' });
    expect(parseSourceSpec('s3://b/k', { env: { AWS_ENDPOINT_URL: 'http://general:9000' } })).toMatchObject({
      endpoint: 'http://general:9000',
    });
    const aws = parseSourceSpec('s3://b/k', { env: { AWS_REGION: 'eu-west-1' } });
    expect(aws).toMatchObject({ endpoint: undefined, region: 'eu-west-1', pathStyle: false, credentials: undefined });
    expect(parseSourceSpec('s3://b/k', { pathStyle: false, endpoint: 'http://x:1', env })).toMatchObject({ pathStyle: false });
  });

  test('s3:// with a profile leaves credentials to the SDK chain', () => {
    const s = parseSourceSpec('s3://b/k', { profile: 'prod', env: { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's' } });
    expect(s).toMatchObject({ profile: 'prod', credentials: undefined });
  });

  test('http(s) URLs, local paths and file:// URLs', () => {
    const h = parseSourceSpec('https://host.example/x/y.sqsh?X-Amz-Signature=abc&X-Amz-Credential=k', { env });
    expect(h).toMatchObject({ kind: 'http', name: 'https://host.example/x/y.sqsh?…' });
    expect(parseSourceSpec('./img.sqsh', { env })).toEqual({ kind: 'file', path: './img.sqsh' });
    expect(parseSourceSpec('/abs/img with space.sqsh', { env })).toEqual({ kind: 'file', path: '/abs/img with space.sqsh' });
    expect(parseSourceSpec(pathToFileURL('/tmp/a b.sqsh').href, { env })).toEqual({ kind: 'file', path: '/tmp/a b.sqsh' });
  });

  test('bad specs fail clearly', () => {
    expect(() => parseSourceSpec('gs://b/k', { env })).toThrow(/unsupported source scheme "gs:\/\/"/);
    expect(() => parseSourceSpec('s3://bucket-only', { env })).toThrow(/s3:\/\/bucket\/key/);
    expect(() => parseSourceSpec('s3://Bad_Bucket!/k', { env })).toThrow(/invalid bucket/);
    expect(() => parseSourceSpec('s3://b.example:80/k', { env })).toThrow(/invalid bucket/);
    expect(() => parseSourceSpec('s3://b/k', { endpoint: 'ftp://x', env })).toThrow(/http/);
    expect(() => parseSourceSpec('', { env })).toThrow(/empty/);
  });
});

describe.each(['s3rver', 'r2'] as S3ServerMode[])('openSource against %s', (mode) => {
  let server: S3TestServer;
  let dir: string;
  let imagePath: string;
  let image: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'open-source-'));
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await writeFile(join(tree, 'big.bin'), patternBytes(700_000, 4));
    for (let i = 0; i < 50; i++) await writeFile(join(tree, 'sub', `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
    imagePath = join(dir, 'image.sqsh');
    execFileSync('mksquashfs', [tree, imagePath, '-comp', 'gzip', '-noappend', '-quiet', '-no-progress'], { stdio: 'ignore' });
    image = await readFile(imagePath);
    server = await startS3Server({ mode, buckets: [BUCKET] });
    await server.putObject(BUCKET, 'backups/1/data.sqsh', image);
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const env = () => ({ AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, AWS_REGION: 'us-east-1' });
  const offsets = (size: number) => [0, 96, 4095, 131_072, 200_000, 500_001, size - 4096, size - 1].filter((o) => o < size);

  async function sameBytes(spec: string, options: Parameters<typeof openSource>[1]) {
    const local = await openSource(imagePath);
    const remote = await openSource(spec, options);
    try {
      expect(remote.size).toBe(local.size);
      for (const off of offsets(local.size)) {
        const len = Math.min(5000, local.size - off);
        expect(Buffer.compare(Buffer.from(await remote.read(off, len)), Buffer.from(await local.read(off, len)))).toBe(0);
      }
      return remote.stats();
    } finally {
      await remote.close();
      await local.close();
    }
  }

  test('a local path reads the file', async () => {
    const src = await openSource(imagePath);
    expect(src.size).toBe(image.length);
    expect(Buffer.compare(Buffer.from(await src.read(0, 96)), image.subarray(0, 96))).toBe(0);
    expect(src.stats()).toEqual({});
    await src.close();
  });

  test('s3:// with --endpoint and environment keys reads the same bytes as the file', async () => {
    server.requests.length = 0;
    const stats = await sameBytes(`s3://${BUCKET}/backups/1/data.sqsh`, { endpoint: server.endpoint, env: env() });
    expect(stats.transport?.requests).toBeGreaterThan(0);
    expect(stats.cache).toBeDefined();
  });

  test('r2:// pointed at the server opens in one round trip of two parallel GETs (R2) or three (s3rver)', async () => {
    server.requests.length = 0;
    const src = await openSource(`r2://${BUCKET}/backups/1/data.sqsh`, {
      endpoint: server.endpoint,
      tailBytes: 64 * 1024, // smaller than the image, so s3rver's wrong suffix answer shows
      env: { R2_ACCESS_KEY_ID: server.accessKeyId, R2_SECRET_ACCESS_KEY: server.secretAccessKey },
    });
    expect(src.size).toBe(image.length);
    expect(server.objectGets()).toHaveLength(mode === 'r2' ? 2 : 3);
    expect(Buffer.compare(Buffer.from(await src.read(0, 96)), image.subarray(0, 96))).toBe(0);
    await src.close();
  });

  test('an open started by openRemoteEarly is taken over by openSource: no second head and tail', async () => {
    server.requests.length = 0;
    const options = { endpoint: server.endpoint, env: env() };
    const opening = openRemoteEarly(`s3://${BUCKET}/backups/1/data.sqsh`, options);
    await opening;
    // The open's head, quick tail and tail reach the server before openSource is even called.
    for (let i = 0; i < 100 && server.objectGets().length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.objectGets()).toHaveLength(3);
    const src = await openSource(`s3://${BUCKET}/backups/1/data.sqsh`, { ...options, opening });
    // None more (s3rver: its wrong answer to the quick tail's suffix is asked again by explicit range).
    expect(server.objectGets()).toHaveLength(mode === 'r2' ? 3 : 4);
    expect(Buffer.compare(Buffer.from(await src.read(0, 96)), image.subarray(0, 96))).toBe(0);
    await src.close();
    // A failed early open is reported by the openSource that takes it.
    const failing = openRemoteEarly(`s3://${BUCKET}/nope`, options);
    failing.catch(() => undefined);
    await expect(openSource(`s3://${BUCKET}/nope`, { ...options, opening: failing })).rejects.toThrow(/NoSuchKey/);
  });

  test('a presigned http URL reads the same bytes as the file', async () => {
    await sameBytes(await presignedUrl(server, 'backups/1/data.sqsh'), {});
  });

  test('a missing object fails openSource with NoSuchKey and leaves nothing open', async () => {
    await expect(openSource(`s3://${BUCKET}/nope`, { endpoint: server.endpoint, env: env() })).rejects.toThrow(/NoSuchKey/);
  });
});

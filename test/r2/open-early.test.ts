import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type CacheOptions, openCachedSource } from '../../src/r2/cache.js';
import { getPool } from '../../src/r2/http-get.js';
import { openNow, openSpans } from '../../src/r2/open-early.js';
import { openSource } from '../../src/r2/open-source.js';
import {
  OPEN_CONNECTIONS,
  OPEN_GET_CONNECTIONS,
  preconnect,
  preconnectSource,
  sourceOrigin,
} from '../../src/r2/preconnect.js';
import { resolveS3Access } from '../../src/r2/s3-credentials.js';
import { objectUrl } from '../../src/r2/s3-url.js';
import { parseSourceSpec, type SpecOptions } from '../../src/r2/spec.js';
import type { OpenResult, RemoteObject } from '../../src/r2/types.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { BUCKET, patternBytes } from './transport-helpers.js';

/** A remote object that records its opens and answers each with a fixed object of `size` bytes. */
function fakeRemote(size = 4 << 20): RemoteObject & { opens: [number, number, number][] } {
  const bytes = patternBytes(size, 7);
  const opens: [number, number, number][] = [];
  return {
    name: 'fake',
    opens,
    // Answers with the whole tail, ignoring a quick tail (as an object may).
    async open(headBytes: number, tailBytes: number, quickTailBytes = 0): Promise<OpenResult> {
      opens.push([headBytes, tailBytes, quickTailBytes]);
      const tail = Math.min(tailBytes, size);
      return {
        info: { size, etag: '"x"' },
        head: bytes.subarray(0, Math.min(headBytes, size)),
        tail: bytes.subarray(size - tail),
      };
    },
    fetch: async (offset: number, length: number) => bytes.subarray(offset, offset + length),
    stats: () => ({}) as never,
    close: async () => undefined,
  };
}

describe('openSpans', () => {
  const cases: CacheOptions[] = [
    {},
    { chunkBytes: 4096 },
    { chunkBytes: 128 * 1024 },
    { missUnitBytes: 512 * 1024 },
    { chunkBytes: 128 * 1024, missUnitBytes: 512 * 1024 },
    { headBytes: 1000 },
    { tailBytes: 0 },
    { tailBytes: 4 << 20, cacheBytes: 64 << 20 },
    { quickTailBytes: 0 },
    { quickTailBytes: 64 * 1024, tailBytes: 512 * 1024 },
  ];
  test.each(cases)('asks what openCachedSource asks with %o', async (options) => {
    const remote = fakeRemote();
    const source = await openCachedSource(remote, options);
    await source.close();
    const { headBytes, tailBytes, quickTailBytes } = openSpans(options);
    expect(remote.opens).toEqual([[headBytes, tailBytes, quickTailBytes]]);
  });
});

describe('openNow', () => {
  test('opens at once; the first open of the same sizes is that one, any later open is a new one', async () => {
    const remote = fakeRemote();
    const early = openNow(remote, { headBytes: 100, tailBytes: 200, quickTailBytes: 50 });
    expect(remote.opens).toEqual([[100, 200, 50]]);
    const first = await early.open(100, 200, 50);
    expect(first.head.length).toBe(100);
    expect(remote.opens).toHaveLength(1);
    await early.open(100, 200, 50);
    expect(remote.opens).toHaveLength(2);
  });

  test('an open of other sizes is not answered with the early one', async () => {
    const remote = fakeRemote();
    const early = openNow(remote, { headBytes: 100, tailBytes: 200, quickTailBytes: 0 });
    const other = await early.open(300, 400);
    expect(other.head.length).toBe(300);
    expect(other.tail.length).toBe(400);
    await early.open(100, 200, 50); // another quick tail: not the early open either
    expect(remote.opens).toEqual([
      [100, 200, 0],
      [300, 400, 0],
      [100, 200, 50],
    ]);
  });

  test('a failed early open fails the open that takes it over (and is not an unhandled rejection)', async () => {
    const remote = fakeRemote();
    remote.open = async () => {
      throw new Error('403 AccessDenied');
    };
    const early = openNow(remote, { headBytes: 1, tailBytes: 1, quickTailBytes: 0 });
    await new Promise((r) => setTimeout(r, 10));
    await expect(early.open(1, 1)).rejects.toThrow('AccessDenied');
  });
});

describe('openSource against the R2-behaviour server', () => {
  let server: S3TestServer;
  const image = patternBytes(3 << 20, 3);
  beforeAll(async () => {
    server = await startS3Server({ mode: 'r2', buckets: [BUCKET] });
    await server.putObject(BUCKET, 'early/data.sqsh', image);
  });
  afterAll(async () => {
    await server?.close();
  });
  const env = () => ({
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: 'auto',
  });

  test('default options: the early head + quick tail + tail GETs are the open (three GETs, none repeated); whileOpening runs once', async () => {
    server.requests.length = 0;
    let calls = 0;
    const src = await openSource(`s3://${BUCKET}/early/data.sqsh`, {
      endpoint: server.endpoint,
      pathStyle: true,
      env: env(),
      whileOpening: () => calls++,
    });
    try {
      expect(calls).toBe(1);
      const gets = server.requests.filter((r) => r.method === 'GET');
      expect(gets.map((r) => r.range).sort()).toEqual(['bytes=-1048576', 'bytes=-262144', 'bytes=0-262143']);
      expect(gets).toHaveLength(OPEN_GET_CONNECTIONS); // a connection opened first for each of them
      expect(
        Buffer.from(await src.read(image.length - 10, 10)).equals(Buffer.from(image.subarray(image.length - 10))),
      ).toBe(true);
    } finally {
      await src.close();
    }
  });

  test('a local file calls whileOpening too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'open-early-'));
    try {
      const path = join(dir, 'x.bin');
      execFileSync('sh', ['-c', `head -c 4096 /dev/zero > ${path}`]);
      let calls = 0;
      const src = await openSource(path, { whileOpening: () => calls++ });
      expect(calls).toBe(1);
      await src.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('GetPool over https (node:https loaded only for it)', () => {
  let dir: string;
  let server: ReturnType<typeof createServer>;
  let port: number;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'get-pool-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    server = createServer(
      { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) },
      (_, res) => res.end('ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('speaks TLS and verifies the certificate: a self-signed server is refused', async () => {
    let connections = 0;
    server.on('connection', () => connections++);
    preconnect(`https://127.0.0.1:${port}`, 1); // TLS runs over a preconnected socket as over a new one
    const pool = getPool(`https://127.0.0.1:${port}`, {
      connections: 1,
      connectTimeoutMs: 5000,
      headersTimeoutMs: 5000,
      idleTimeoutMs: 5000,
    });
    try {
      await expect(pool.get('/', {}, new AbortController().signal)).rejects.toMatchObject({
        code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
      });
      expect(connections).toBe(1);
    } finally {
      pool.destroy();
    }
  });
});

describe('preconnect', () => {
  test('the origin known early is the one the S3 transport sends to', async () => {
    const env = { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', R2_ACCOUNT_ID: 'acct1' };
    const cases: [string, SpecOptions][] = [
      ['s3://b/k/x.sqsh', { endpoint: 'http://127.0.0.1:9000', pathStyle: true, region: 'us-east-1', env }],
      ['s3://b/k/x.sqsh', { region: 'eu-west-1', env }],
      ['s3://b/x.sqsh', { endpoint: 'https://store.example:8443/base', pathStyle: false, region: 'x', env }],
      ['r2://b/x.sqsh', { env }],
    ];
    for (const [spec, options] of cases) {
      const parsed = parseSourceSpec(spec, options);
      if (parsed.kind !== 's3') throw new Error('not s3');
      const { location } = await resolveS3Access(parsed);
      expect(sourceOrigin(spec, options)).toBe(objectUrl(location).origin);
    }
    expect(sourceOrigin('https://h.example:444/a.sqsh?X-Amz-Signature=1')).toBe('https://h.example:444');
    // Unknown without the SDK (no static keys, or no region), or nothing to connect to.
    expect(sourceOrigin('s3://b/x.sqsh', { endpoint: 'http://127.0.0.1:1', env: { AWS_REGION: 'r' } })).toBeUndefined();
    expect(
      sourceOrigin('s3://b/x.sqsh', { env: { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' } }),
    ).toBeUndefined();
    expect(sourceOrigin('/tmp/x.sqsh')).toBeUndefined();
  });

  test("preconnectSource opens the open's connections first and the rest when asked, all taken by the pool", async () => {
    let connections = 0;
    const server = createHttpServer((_, res) => res.end('ok'));
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const spec = 's3://b/x.sqsh';
    const options: SpecOptions = {
      endpoint: `http://127.0.0.1:${port}`,
      pathStyle: true,
      region: 'us-east-1',
      env: { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' },
    };
    try {
      preconnectSource(spec, options, OPEN_GET_CONNECTIONS);
      await new Promise((r) => setTimeout(r, 50));
      expect(connections).toBe(OPEN_GET_CONNECTIONS);
      preconnectSource(spec, options, OPEN_CONNECTIONS - OPEN_GET_CONNECTIONS);
      await new Promise((r) => setTimeout(r, 50));
      expect(connections).toBe(OPEN_CONNECTIONS);
      const pool = getPool(`http://127.0.0.1:${port}`, {
        connections: OPEN_CONNECTIONS,
        connectTimeoutMs: 5000,
        headersTimeoutMs: 5000,
        idleTimeoutMs: 5000,
      });
      const signal = new AbortController().signal;
      const asked = Array.from({ length: OPEN_CONNECTIONS }, async () =>
        (await pool.get('/', {}, signal)).readText(100),
      );
      expect(await Promise.all(asked)).toEqual(Array(OPEN_CONNECTIONS).fill('ok'));
      expect(connections).toBe(OPEN_CONNECTIONS); // every one taken over, none new
      pool.destroy();
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test('GetPool sends its first requests on the preconnected sockets, then opens new ones', async () => {
    let connections = 0;
    const server = createHttpServer((_, res) => res.end('ok'));
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      preconnect(origin, 2);
      await new Promise((r) => setTimeout(r, 50));
      expect(connections).toBe(2);
      const pool = getPool(origin, {
        connections: 3,
        connectTimeoutMs: 5000,
        headersTimeoutMs: 5000,
        idleTimeoutMs: 5000,
      });
      const signal = new AbortController().signal;
      const bodies = await Promise.all([1, 2, 3].map(async () => (await pool.get('/', {}, signal)).readText(100)));
      expect(bodies).toEqual(['ok', 'ok', 'ok']);
      expect(connections).toBe(3); // two taken over, one new
      pool.destroy();
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

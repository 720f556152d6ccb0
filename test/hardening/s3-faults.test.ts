/**
 * S3 faults at the library level: a real image in the project's S3 server (R2 mode), read through
 * openSource (S3 transport + chunk cache) and SquashfsImage, with faults injected by the server
 * (500 / 503 SlowDown, reset, truncated body, stalled response) and by the network proxy in front of
 * it (resets and truncation mid-body, stalls, refused connections), plus the object replaced or
 * deleted while open. Every read either returns exactly the source file's bytes or fails with an EIO
 * SquashfsError within the retry budget; once the fault clears, reads on the same image succeed.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { openSource, type OpenedSource } from '../../src/r2/open-source.js';
import { SquashfsError, SquashfsImage } from '../../src/squashfs/index.js';
import { type NetProxy, startProxy } from '../../src/testing/net-proxy.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { patternBytes } from '../helpers/bytes.js';

const execFileP = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const KEY = 'backups/faults/data.sqsh';
/** A failing read gives up within the retry budget plus one idle timeout; generous margin for a busy machine. */
const RETRY = { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 200, totalTimeoutMs: 4000 };
const FAIL_WITHIN_MS = 12_000;

let dir: string;
let image: Buffer;
let otherImage: Buffer;
const files = new Map<string, Buffer>();
let server: S3TestServer;
let proxy: NetProxy;


async function mksquashfs(tree: string, out: string): Promise<Buffer> {
  await execFileP('mksquashfs', [
    tree,
    out,
    '-comp',
    'gzip',
    '-noappend',
    '-quiet',
    '-no-progress',
    '-processors',
    '1',
  ]);
  return readFile(out);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hardening-s3-'));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'small'), { recursive: true });
  const add = async (name: string, bytes: Buffer): Promise<void> => {
    files.set(name, bytes);
    await writeFile(join(tree, name), bytes);
  };
  await add('big.bin', patternBytes(3 * MiB, 7)); // incompressible: 24 blocks of 128 KiB
  await add('text.txt', Buffer.from('a lazy mount reads only what it needs\n'.repeat(14_000)));
  for (let i = 0; i < 20; i++) await add(`small/f${i}`, patternBytes(100 + i * 37, i + 1));
  image = await mksquashfs(tree, join(dir, 'image.sqsh'));
  // The replacement differs everywhere that matters (same names, other bytes).
  const tree2 = join(dir, 'tree2');
  await mkdir(join(tree2, 'small'), { recursive: true });
  for (const [name, bytes] of files) await writeFile(join(tree2, name), patternBytes(bytes.length, 99 + bytes.length));
  otherImage = await mksquashfs(tree2, join(dir, 'other.sqsh'));

  server = await startS3Server({ mode: 'r2', buckets: ['images'] });
  await server.putObject('images', KEY, image);
  proxy = await startProxy({ target: { host: '127.0.0.1', port: server.port } });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  server.clearFaults();
  proxy.setFaults(undefined);
  await server.putObject('images', KEY, image);
});

interface Opened {
  img: SquashfsImage;
  source: OpenedSource;
}

/** A cold image: tiny caches and no readahead, so reads go to the network while a fault is on. */
async function openCold(): Promise<Opened> {
  const source = await openSource(`s3://images/${KEY}`, {
    endpoint: proxy.url,
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    env: {},
    cacheBytes: 128 * KiB,
    chunkBytes: 64 * KiB,
    tailBytes: 64 * KiB,
    maxReadaheadBytes: 0,
    retry: RETRY,
    connectTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    idleTimeoutMs: 1000,
  });
  const img = await SquashfsImage.open(source, { cacheBytes: 1 * MiB });
  return { img, source };
}

interface Tally {
  ok: number;
  eio: number;
  wrong: string[];
  otherErrors: string[];
  slowestMs: number;
}

/** Reads `names` whole (64 KiB reads) and judges every read against the source file. */
async function readAndJudge(
  img: SquashfsImage,
  names: string[] = [...files.keys()],
  stopAfterFailures = Infinity,
): Promise<Tally> {
  const t: Tally = { ok: 0, eio: 0, wrong: [], otherErrors: [], slowestMs: 0 };
  for (const name of names) {
    const want = files.get(name)!;
    for (let at = 0; at < want.length; at += 64 * KiB) {
      const t0 = Date.now();
      try {
        const got = Buffer.from(await img.read(name, at, 64 * KiB));
        if (!got.equals(want.subarray(at, at + 64 * KiB))) t.wrong.push(`${name}@${at}`);
        else t.ok++;
      } catch (e) {
        if (e instanceof SquashfsError && e.code === 'EIO') t.eio++;
        else
          t.otherErrors.push(
            `${name}@${at}: ${(e as Error)?.constructor?.name} ${(e as SquashfsError).code ?? ''} ${(e as Error)?.message}`,
          );
      }
      t.slowestMs = Math.max(t.slowestMs, Date.now() - t0);
      if (t.eio + t.otherErrors.length >= stopAfterFailures) return t;
    }
  }
  return t;
}

function expectAllGood(t: Tally): void {
  expect(t.wrong).toEqual([]);
  expect(t.otherErrors).toEqual([]);
  expect(t.eio).toBe(0);
  expect(t.ok).toBeGreaterThan(50);
}

function expectFailedCleanly(t: Tally): void {
  expect(t.wrong).toEqual([]);
  expect(t.otherErrors).toEqual([]);
  expect(t.eio).toBeGreaterThan(0);
  expect(t.slowestMs).toBeLessThan(FAIL_WITHIN_MS);
}

describe('transient faults: reads succeed after retries with the right bytes', () => {
  const transient: [string, Parameters<S3TestServer['injectFault']>[0]['fault'], number][] = [
    ['a burst of 500 InternalError', { kind: 'status', status: 500, code: 'InternalError' }, 3],
    [
      'a burst of 503 SlowDown',
      { kind: 'status', status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' },
      3,
    ],
    ['connections reset before the answer', { kind: 'reset' }, 2],
    ['bodies cut short', { kind: 'truncate', bytes: 1000 }, 3],
    ['a response stalled before its headers', { kind: 'stall', ms: 4000 }, 1],
    ['a response stalled mid-body', { kind: 'stall', ms: 4000, afterBytes: 5000 }, 1],
  ];
  test.each(transient)('%s', async (_name, fault, times) => {
    const { img, source } = await openCold();
    try {
      const before = server.requests.length;
      server.injectFault({ fault, times, match: { method: 'GET', key: KEY } });
      const t = await readAndJudge(img);
      expectAllGood(t);
      expect(server.requests.slice(before).filter((r) => r.fault === fault.kind).length).toBe(times);
      expect(source.stats().transport?.retries).toBeGreaterThanOrEqual(times);
    } finally {
      await img.close();
    }
  });

  const network: [string, Parameters<NetProxy['setFaults']>[0]][] = [
    ['connections reset mid-body (proxy)', { resetAfterBytes: 20_000, times: 3 }],
    ['connections closed mid-body (proxy)', { truncateAfterBytes: 30_000, times: 3 }],
    ['a connection stalled mid-body (proxy)', { stallAfterBytes: 10_000, stallMs: 5000, times: 1 }],
    ['connects refused then answered (proxy)', { refuseConnections: 'reset', resetAfterBytes: 0, times: 3 }],
  ];
  test.each(network)('%s', async (_name, faults) => {
    const { img } = await openCold();
    try {
      proxy.resetStats();
      proxy.setFaults(faults);
      const t = await readAndJudge(img);
      expectAllGood(t);
      expect(proxy.stats().faultsTriggered).toBe(faults!.times);
    } finally {
      await img.close();
    }
  });
});

describe('lasting faults: EIO in bounded time, never wrong bytes; reads succeed once the fault clears', () => {
  const lasting: [string, () => void][] = [
    [
      'every GET answers 500',
      () =>
        server.injectFault({
          fault: { kind: 'status', status: 500 },
          times: Infinity,
          match: { method: 'GET', key: KEY },
        }),
    ],
    [
      'every GET answers 503 SlowDown',
      () =>
        server.injectFault({
          fault: { kind: 'status', status: 503, code: 'SlowDown' },
          times: Infinity,
          match: { method: 'GET', key: KEY },
        }),
    ],
    [
      'every body is cut short',
      () =>
        server.injectFault({
          fault: { kind: 'truncate', bytes: 100 },
          times: Infinity,
          match: { method: 'GET', key: KEY },
        }),
    ],
    [
      'every response stalls',
      () =>
        server.injectFault({
          fault: { kind: 'stall', ms: 30_000 },
          times: Infinity,
          match: { method: 'GET', key: KEY },
        }),
    ],
    ['every connection is reset mid-body (proxy)', () => proxy.setFaults({ resetAfterBytes: 2000 })],
    [
      'the network is down: connects refused (proxy)',
      () => proxy.setFaults({ refuseConnections: 'reset', resetAfterBytes: 0 }),
    ],
    ['the object is deleted', () => void server.deleteObject('images', KEY)],
  ];
  test.each(lasting)('%s', async (name, start) => {
    const { img } = await openCold();
    try {
      start();
      await new Promise((r) => setTimeout(r, 50));
      const during = await readAndJudge(img, ['big.bin', 'text.txt', 'small/f3'], 3);
      expectFailedCleanly(during);
      server.clearFaults();
      proxy.setFaults(undefined);
      if (name === 'the object is deleted') await server.putObject('images', KEY, image); // same bytes: same ETag
      expectAllGood(await readAndJudge(img));
    } finally {
      await img.close();
    }
  });

  test('the object is replaced while open: its new bytes are never returned', async () => {
    const { img } = await openCold();
    try {
      // Warm part of the file, then swap the object under the open image.
      const warm = await readAndJudge(img, ['small/f1']);
      expectAllGood({ ...warm, ok: warm.ok + 100 });
      await server.putObject('images', KEY, otherImage);
      const during = await readAndJudge(img);
      expect(during.wrong).toEqual([]);
      expect(during.otherErrors).toEqual([]);
      expect(during.eio).toBeGreaterThan(0);
      // The original comes back (same bytes, same ETag): the open image reads again.
      await server.putObject('images', KEY, image);
      expectAllGood(await readAndJudge(img));
    } finally {
      await img.close();
    }
  });

  test('an endpoint nobody listens on: open fails with a clear error, in bounded time', async () => {
    const closed = await startProxy({ target: { host: '127.0.0.1', port: server.port } });
    const url = closed.url;
    await closed.close();
    const t0 = Date.now();
    const e = await openSource(`s3://images/${KEY}`, {
      endpoint: url,
      region: server.region,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      env: {},
      retry: RETRY,
      connectTimeoutMs: 1000,
    }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(e).toBeInstanceOf(Error);
    expect(e!.message).toMatch(/ECONNREFUSED|connect|Network/i);
    expect(Date.now() - t0).toBeLessThan(FAIL_WITHIN_MS);
  });
});

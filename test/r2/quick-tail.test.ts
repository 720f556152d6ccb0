/**
 * The open's quick tail (cache option quickTailBytes): the open completes with the head and a short
 * suffix while the whole tail is still on its way; metadata that does not fit the quick tail waits for
 * the whole tail instead of fetching it again; a failed whole tail costs only the fetches it would have
 * saved. A real mksquashfs image from the test S3 server (R2 behaviour) on 127.0.0.1, read whole.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChunkCacheStats } from '../../src/r2/cache.js';
import { openRemoteObject, openSource, type SourceOptions } from '../../src/r2/open-source.js';
import { SquashfsImage } from '../../src/squashfs/index.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';

const execFileP = promisify(execFile);
const KiB = 1024;
const KEY = 'backups/q/data.sqsh';
const TAIL = /^bytes=-1048576$/;
const QUICK = /^bytes=-262144$/;

let dir: string;
let image: Buffer;
let metadataBytes: number;
const files = new Map<string, Buffer>();
let server: S3TestServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quick-tail-'));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'src'), { recursive: true });
  const add = async (name: string, bytes: Buffer) => {
    files.set(name, bytes);
    await writeFile(join(tree, name), bytes);
  };
  await add('big.bin', randomBytes(3 << 20)); // puts the small files' fragments 3 MiB into the image
  for (let i = 0; i < 300; i++) await add(`src/f${i}.c`, randomBytes(500 + i * 7));
  const path = join(dir, 'image.sqsh');
  await execFileP('mksquashfs', [dir + '/tree', path, '-comp', 'gzip', '-noappend', '-quiet', '-no-progress']);
  image = await readFile(path);
  // bytes_used at 40, inode_table_start at 64: the metadata run is what the mount must hold.
  metadataBytes = Number(image.readBigUInt64LE(40) - image.readBigUInt64LE(64));
  server = await startS3Server({ mode: 'r2', buckets: ['images'] });
  await server.putObject('images', KEY, image);
});

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  server.requests.length = 0;
});

const options = (extra: SourceOptions = {}): SourceOptions => ({
  endpoint: server.endpoint,
  region: server.region,
  credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  env: {},
  ...extra,
});

/** Opens the image, checks every file and the pinned metadata, and returns the ranges the open asked for. */
async function openAndCheck(extra: SourceOptions = {}): Promise<string[]> {
  const source = await openSource(`s3://images/${KEY}`, options(extra));
  const img = await SquashfsImage.open(source);
  try {
    const opened = server.objectGets(KEY).map((r) => r.range ?? '');
    expect((source.stats().cache as ChunkCacheStats).pinnedBytes).toBe(metadataBytes);
    for (const [name, bytes] of files) {
      expect(Buffer.from(await img.read(name, 0, bytes.length)).equals(bytes), name).toBe(true);
    }
    return opened;
  } finally {
    await img.close();
    await source.close();
  }
}

describe('the open quick tail', () => {
  it('the image is small enough to show it: metadata under 256 KiB, the object over 1 MiB', () => {
    expect(metadataBytes).toBeLessThan(256 * KiB);
    expect(metadataBytes).toBeGreaterThan(4 * KiB);
    expect(image.length).toBeGreaterThan(1 << 20);
  });

  it('completes the open without waiting for the whole tail when the metadata is in the quick tail', async () => {
    // The whole tail stalls for 5 s: an open that waited for it would take that long.
    server.injectFault({ fault: { kind: 'stall', ms: 5000 }, match: { key: KEY, range: TAIL } });
    const started = Date.now();
    const opened = await openAndCheck();
    expect(Date.now() - started).toBeLessThan(4000);
    expect(opened.slice(0, 3).sort()).toEqual(['bytes=-1048576', 'bytes=-262144', 'bytes=0-262143']);
  });

  it('metadata larger than the quick tail waits for the whole tail: three GETs, nothing fetched twice', async () => {
    const opened = await openAndCheck({ quickTailBytes: 4 * KiB });
    expect(opened.sort()).toEqual(['bytes=-1048576', 'bytes=-4096', 'bytes=0-262143']);
  });

  it("the whole tail's bytes are data for the reads: the small files at the image's end cost no GET", async () => {
    const source = await openSource(`s3://images/${KEY}`, options());
    const img = await SquashfsImage.open(source);
    try {
      // Until the whole tail is in, a read there would fetch; wait for it to be taken in. Held before
      // it: the head and the quick tail (512 KiB); after: the head and the whole tail (1.25 MiB).
      const held = () => (source.stats().cache as ChunkCacheStats).cachedBytes;
      for (let i = 0; i < 200 && held() < 1 << 20; i++) await new Promise((r) => setTimeout(r, 10));
      expect(held()).toBeGreaterThan(1 << 20);
      const before = server.objectGets(KEY).length;
      const last = `src/f299.c`;
      expect(Buffer.from(await img.read(last, 0, files.get(last)!.length)).equals(files.get(last)!)).toBe(true);
      expect(server.objectGets(KEY).slice(before).map((r) => r.range)).toEqual([]);
    } finally {
      await img.close();
      await source.close();
    }
  });

  it('a whole tail that fails costs only the fetches it would have saved: the image still reads right', async () => {
    server.injectFault({ fault: { kind: 'status', status: 403, code: 'AccessDenied' }, match: { key: KEY, range: TAIL } });
    const opened = await openAndCheck({ quickTailBytes: 4 * KiB });
    // The metadata beyond the quick tail came by an explicit range of its own.
    expect(opened.filter((r) => !QUICK.test(r) && !TAIL.test(r) && r !== 'bytes=0-262143' && r !== 'bytes=-4096')).not.toEqual([]);
  });

  it('quickTailBytes 0 (or not under tailBytes) waits for the whole tail: two GETs, as before', async () => {
    expect((await openAndCheck({ quickTailBytes: 0 })).sort()).toEqual(['bytes=-1048576', 'bytes=0-262143']);
    server.requests.length = 0;
    expect((await openAndCheck({ quickTailBytes: 1 << 20 })).sort()).toEqual(['bytes=-1048576', 'bytes=0-262143']);
  });

  it('an object no larger than the quick tail has no whole tail to wait for', async () => {
    await server.putObject('images', 'tiny.bin', Buffer.alloc(100 * KiB, 7));
    const remote = await openRemoteObject('s3://images/tiny.bin', options());
    try {
      const opened = await remote.open(4 * KiB, 1 << 20, 256 * KiB);
      expect(opened.tail.length).toBe(100 * KiB);
      expect(opened.fullTail).toBeUndefined();
      const big = await remote.open(4 * KiB, 1 << 20, 64 * KiB);
      expect(big.tail.length).toBe(64 * KiB);
      expect(Buffer.from(await big.fullTail!).equals(Buffer.alloc(100 * KiB, 7))).toBe(true);
    } finally {
      await remote.close();
    }
  });
});

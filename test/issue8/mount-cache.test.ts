/**
 * Issue 8 through real mounts of an object on the project's S3 test server: a persistent cache
 * directory makes a second mount fetch nothing, and a hydrated mount reads nothing more from the network.
 * The library mount() serves from this process; every read is done by child processes.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MountHandle, mount } from '../../src/fs/index.js';
import type { ChunkCacheStats, HydrationStats } from '../../src/r2/cache.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { privateBuild } from '../hardening/build-tools.js';
import { startMount } from '../hardening/mount-process.js';
import { dataGets, digestsUnder, makeTree, tempDir, waitUntil } from './helpers.js';

const execFileP = promisify(execFile);
const KEY = 'images/tree.sqsh';
const MiB = 1 << 20;

let server: S3TestServer;
let work: string;
let digests: Map<string, string>;
let files: string[];

beforeAll(async () => {
  work = await tempDir('mount');
  const tree = join(work, 'tree');
  await mkdir(tree);
  digests = await makeTree(tree);
  files = [...digests.keys()];
  await execFileP('mksquashfs', [tree, join(work, 'img.sqsh'), '-noappend', '-quiet', '-no-progress', '-comp', 'lz4']);
  server = await startS3Server({ buckets: ['b'] });
  await server.putObject('b', KEY, await readFile(join(work, 'img.sqsh')));
  process.env.AWS_ACCESS_KEY_ID = server.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
}, 120_000);

afterAll(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const source = () => ({ endpoint: server.endpoint, region: server.region, pathStyle: true });

async function withMount<T>(
  mp: string,
  options: Parameters<typeof mount>[2],
  body: (h: MountHandle) => Promise<T>,
): Promise<T> {
  await mkdir(mp, { recursive: true });
  const handle = await mount(`s3://b/${KEY}`, mp, { ...options, source: source() });
  try {
    return await body(handle);
  } finally {
    await handle.unmount();
  }
}

function hydrationOf(handle: MountHandle): HydrationStats | undefined {
  return (handle.stats().source?.cache as ChunkCacheStats | undefined)?.hydration;
}

async function readAllAndCheck(mp: string): Promise<void> {
  expect(await digestsUnder(mp, files)).toEqual(digests);
}

describe('mount() with a cache directory and hydration', () => {
  it('a second mount with the same --cache-dir reads every file with 0 data GETs', async () => {
    const cacheDir = join(work, 'cache-remount');
    await withMount(join(work, 'mnt-a'), { cacheDir, cacheBytes: 16 * MiB }, async () => {
      const mark = server.requests.length;
      await readAllAndCheck(join(work, 'mnt-a'));
      expect(dataGets(server, KEY, mark).length).toBeGreaterThan(0);
    });
    const gets = await withMount(join(work, 'mnt-b'), { cacheDir, cacheBytes: 16 * MiB }, async () => {
      const mark = server.requests.length;
      await readAllAndCheck(join(work, 'mnt-b'));
      return dataGets(server, KEY, mark).length;
    });
    expect(gets).toBe(0);
  });

  it('hydrate: stats report it done (all bytes local); then, reading every file makes 0 GETs', async () => {
    const cacheDir = join(work, 'cache-hydrate');
    await withMount(join(work, 'mnt-h'), { cacheDir, cacheBytes: 8 * MiB, hydrate: true }, async (handle) => {
      const hydration = () => hydrationOf(handle);
      await waitUntil('hydration done', () => hydration()?.state === 'done');
      const h = hydration()!;
      expect(h.doneBytes).toBe(h.totalBytes);
      const mark = server.requests.length;
      await readAllAndCheck(join(work, 'mnt-h'));
      expect(dataGets(server, KEY, mark)).toEqual([]);
    });
  });

  it('hydrate without a cache directory, image larger than the chunk memory: a warning, the mount works', async () => {
    await withMount(join(work, 'mnt-nh'), { cacheBytes: 4 * MiB, hydrate: true }, async (handle) => {
      await readAllAndCheck(join(work, 'mnt-nh'));
      expect(hydrationOf(handle)).toBeUndefined();
    });
  });
});

describe('squashfs-r2 mount --cache-dir (CLI, its own process)', () => {
  it('a remount with the same --cache-dir fetches no data', async () => {
    const build = await privateBuild();
    const cacheDir = join(work, 'cache-cli');
    const env = { ...process.env };
    const flags = [
      '--endpoint',
      server.endpoint,
      '--path-style',
      '--region',
      server.region,
      '--cache-dir',
      cacheDir,
      '--cache-size',
      '16M',
    ];
    const counts: number[] = [];
    for (const name of ['cli-a', 'cli-b']) {
      const mp = join(work, name);
      await mkdir(mp);
      const m = await startMount(build.cli, `s3://b/${KEY}`, mp, flags, env);
      try {
        const mark = server.requests.length;
        await readAllAndCheck(mp);
        counts.push(dataGets(server, KEY, mark).length);
      } finally {
        expect(await m.unmount()).toBe(0);
      }
    }
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBe(0);
  }, 180_000);
});

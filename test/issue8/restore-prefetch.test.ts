/**
 * Issue 8 through real restores (the CLI of a private build: mount-backup, its lower mount process,
 * fuse-overlayfs) against the project's S3 test server, counting the archive's GETs in its request log:
 * - --record-prefetch stores prefetch.json; the next restore fetches those ranges right after mounting,
 *   and reading the same files then makes no GETs; a list for another ETag, a malformed one and a
 *   missing one are ignored (the first with an info line, the second with a warning, the third silently);
 * - --cache-dir: a second restore of the same backup fetches nothing twice;
 * - --hydrate: `list` shows hydration progress; once done, reading every file makes no GETs.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupKeys } from '../../src/backup/layout.js';
import { listRestores } from '../../src/backup/list.js';
import { fetchPrefetchList } from '../../src/backup/prefetch.js';
import { teardownRestore } from '../../src/backup/restore.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { mountsUnder } from '../backup/helpers.js';
import { type PrivateBuild, privateBuild } from '../hardening/build-tools.js';
import { dataGets, digestsUnder, execFileP, makeTree, tempDir, waitUntil } from './helpers.js';

const BUCKET = 'issue8-backups';
let server: S3TestServer;
let build: PrivateBuild;
let work: string;
let stateDir: string;
let digests: Map<string, string>;
let id: string;
let archiveKey: string;
let prefetchKey: string;
const targets: string[] = [];

const bucketFlags = () => ['--bucket', BUCKET, '--endpoint', server.endpoint];
const env = () => ({
  ...process.env,
  AWS_ACCESS_KEY_ID: server.accessKeyId,
  AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
});

async function cli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileP(build.cli, args, { env: env(), timeout: 120_000 });
}

/** mount-backup onto a fresh target; returns the target and the CLI's stderr. */
async function restore(name: string, flags: string[] = []): Promise<{ target: string; stderr: string }> {
  const target = join(work, name);
  await mkdir(target);
  targets.push(target);
  const { stderr } = await cli([
    'mount-backup',
    ...bucketFlags(),
    '--state-dir',
    stateDir,
    '--cache-size',
    '32M',
    ...flags,
    id,
    target,
  ]);
  return { target, stderr };
}

async function lowerLog(target: string): Promise<string> {
  const rec = (await listRestores(stateDir)).find((r) => r.dir === target);
  if (!rec) throw new Error(`no restore of ${target}`);
  return readFile(rec.lowerLog, 'utf8').catch(() => '');
}

const teardown = (target: string) => teardownRestore(target, { stateDir, discardWrites: true });

beforeAll(async () => {
  build = await privateBuild();
  work = await tempDir('restore');
  stateDir = join(work, 'state');
  const tree = join(work, 'tree');
  await mkdir(tree);
  digests = await makeTree(tree);
  server = await startS3Server({ buckets: [BUCKET] });
  // fetchPrefetchList in this process reads the bucket as the lower mount does: credentials from the environment.
  process.env.AWS_ACCESS_KEY_ID = server.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const created = await cli(['create-backup', ...bucketFlags(), '--compression', 'lz4', tree]);
  id = created.stdout.trim();
  ({ archive: archiveKey, prefetch: prefetchKey } = backupKeys('backups', id));
}, 180_000);

afterAll(async () => {
  for (const t of targets) await teardown(t).catch(() => undefined);
  if (work) {
    expect(mountsUnder(work)).toEqual([]);
    await rm(work, { recursive: true, force: true });
  }
  await server?.close();
});

describe('recorded prefetch', () => {
  const firstFiles = ['src/deep/f0.bin', 'f2.bin', 'src/f4.bin', 'src/deep/f9.bin'];

  it('restore 1 records prefetch.json; restore 2 fetches those ranges at once, then reading the same files fetches none of them again', async () => {
    const one = await restore('t-record', ['--record-prefetch', '--record-seconds', '60']);
    const read1 = await digestsUnder(one.target, firstFiles);
    for (const f of firstFiles) expect(read1.get(f), f).toBe(digests.get(f));
    await teardown(one.target); // ends the window early: the list is stored on unmount
    const fetched = await fetchPrefetchList(
      { bucket: BUCKET, endpoint: server.endpoint, region: server.region },
      prefetchKey,
    );
    expect(fetched).toMatchObject({ kind: 'list' });
    const list = (fetched as Extract<typeof fetched, { kind: 'list' }>).list;
    expect(list.ranges.length).toBeGreaterThan(0);
    const recordedBytes = list.ranges.reduce((s, [, n]) => s + n, 0);
    // The four files are 1.85 MB: whole 256 KiB chunks around them (and metadata), not the 6 MB archive.
    expect(recordedBytes).toBeGreaterThan(500_000);
    expect(recordedBytes).toBeLessThan(4 << 20);
    console.log(
      `prefetch.json: ${list.ranges.length} ranges, ${recordedBytes} bytes, ${JSON.stringify(list).length} bytes of JSON`,
    );

    const mark = server.requests.length;
    const started = Date.now();
    const two = await restore('t-replay');
    await waitUntil('prefetch done', async () => /prefetch done/.test(await lowerLog(two.target)));
    const log = await lowerLog(two.target);
    expect(log).toMatch(new RegExp(`prefetching ${list.ranges.length} recorded ranges`));
    const prefetchGets = dataGets(server, archiveKey, mark);
    console.log(
      `restore 2: ${prefetchGets.length} GETs (open + prefetch) before any read, ready+prefetched in ${Date.now() - started} ms`,
    );
    const mark2 = server.requests.length;
    const read2 = await digestsUnder(two.target, firstFiles);
    expect(read2).toEqual(read1);
    // Nothing the files need is fetched again. What may still go out, outside every recorded range:
    // sequential readahead past what was read (it was never read, so never recorded), and the data
    // spans of directories fuse-overlayfs lists on the way (src/squashfs/subtree-prefetch.ts).
    const whileReading = dataGets(server, archiveKey, mark2);
    console.log(
      `restore 2: ${whileReading.length} GETs while reading the recorded files (${whileReading.map((g) => g.range).join(', ')})`,
    );
    for (const g of whileReading) {
      const [from, to] = (g.range ?? '').replace('bytes=', '').split('-').map(Number) as [number, number];
      const overlapping = list.ranges.filter(([o, n]) => from < o + n && o <= to);
      expect(overlapping, `GET ${g.range} overlaps the recorded ranges`).toEqual([]);
    }
    expect(whileReading.length).toBeLessThanOrEqual(8);
    await teardown(two.target);
  }, 240_000);

  it('a list recorded for another ETag is ignored (info line), reads then fetch as usual', async () => {
    const fetched = await fetchPrefetchList(
      { bucket: BUCKET, endpoint: server.endpoint, region: server.region },
      prefetchKey,
    );
    expect(fetched).toMatchObject({ kind: 'list' });
    const list = (fetched as Extract<typeof fetched, { kind: 'list' }>).list;
    await server.putObject(
      BUCKET,
      prefetchKey,
      JSON.stringify({ ...list, etag: '"0123456789abcdef0123456789abcdef"' }),
    );
    const mark = server.requests.length;
    const r = await restore('t-etag');
    await waitUntil('the list checked', async () => /prefetch list ignored/.test(await lowerLog(r.target)));
    expect(await lowerLog(r.target)).toMatch(/prefetch list ignored: recorded for ETag "0123/);
    expect(r.stderr).not.toMatch(/warning/);
    const afterOpen = dataGets(server, archiveKey, mark).length;
    const mark2 = server.requests.length;
    await digestsUnder(r.target, firstFiles);
    expect(dataGets(server, archiveKey, mark2).length).toBeGreaterThan(0);
    expect(afterOpen).toBeLessThanOrEqual(4); // head + quick tail + tail (+ metadata run): nothing prefetched
    await teardown(r.target);
  }, 120_000);

  it('a malformed prefetch.json gives a warning and the restore works; a missing one is silent', async () => {
    await server.putObject(BUCKET, prefetchKey, '{"version": 1, "ranges": [[0');
    const bad = await restore('t-malformed');
    expect(bad.stderr).toMatch(/warning: prefetch.json of backup .* ignored: not JSON/);
    expect((await digestsUnder(bad.target, ['f2.bin'])).get('f2.bin')).toBe(digests.get('f2.bin'));
    await teardown(bad.target);

    await server.deleteObject(BUCKET, prefetchKey);
    const none = await restore('t-missing');
    expect(none.stderr).not.toMatch(/prefetch/);
    expect(await lowerLog(none.target)).not.toMatch(/prefetch/);
    await teardown(none.target);
  }, 120_000);

  it('the list is stored when the recording window ends, before unmount', async () => {
    await server.deleteObject(BUCKET, prefetchKey);
    const r = await restore('t-window', ['--record-prefetch', '--record-seconds', '3']);
    await digestsUnder(r.target, ['f5.bin']);
    await waitUntil('prefetch.json stored', async () => /prefetch list stored/.test(await lowerLog(r.target)), 20_000);
    const fetched = await fetchPrefetchList(
      { bucket: BUCKET, endpoint: server.endpoint, region: server.region },
      prefetchKey,
    );
    expect(fetched).toMatchObject({ kind: 'list' });
    await teardown(r.target);
  }, 120_000);
});

describe('restores with --cache-dir and --hydrate', () => {
  const all = () => [...digests.keys()];

  it('a second restore of the same backup with the same --cache-dir reads every file with 0 GETs', async () => {
    const cacheDir = join(work, 'chunk-cache');
    const first = await restore('t-cache-1', ['--cache-dir', cacheDir]);
    expect(await digestsUnder(first.target, all())).toEqual(digests);
    await teardown(first.target);
    const second = await restore('t-cache-2', ['--cache-dir', cacheDir]);
    const mark = server.requests.length;
    expect(await digestsUnder(second.target, all())).toEqual(digests);
    expect(dataGets(server, archiveKey, mark)).toEqual([]);
    await teardown(second.target);
  }, 120_000);

  it('--hydrate: list shows progress; once done, reading every file makes 0 GETs', async () => {
    const r = await restore('t-hydrate', ['--cache-dir', join(work, 'hydrate-cache'), '--hydrate']);
    let shown = '';
    await waitUntil(
      'hydration done in list',
      async () => {
        shown = (await cli(['list', '--state-dir', stateDir])).stdout;
        return /"hydration":\{"state":"done"/.test(shown);
      },
      60_000,
    );
    const mark = server.requests.length;
    expect(await digestsUnder(r.target, all())).toEqual(digests);
    expect(dataGets(server, archiveKey, mark)).toEqual([]);
    await teardown(r.target);
  }, 120_000);
});

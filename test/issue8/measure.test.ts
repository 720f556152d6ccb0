/**
 * Issue 8 measurements (skipped unless ISSUE8_MEASURE=1): a project-like tree restored with mount-backup
 * from the S3 test server with added latency, then read in full (find | cat), in five ways: cold,
 * recording a prefetch list, replaying it, with a warm --cache-dir, and with --hydrate; plus squashfuse
 * on a local image of the same tree. Prints restore and read times and the archive's GETs.
 *   ISSUE8_MEASURE=1 ISSUE8_RTT_MS=20 npx vitest run test/issue8/measure.test.ts
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { backupKeys } from '../../src/backup/layout.js';
import { listRestores } from '../../src/backup/list.js';
import { teardownRestore } from '../../src/backup/restore.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { type PrivateBuild, privateBuild } from '../hardening/build-tools.js';
import { dataGets, tempDir, waitUntil } from './helpers.js';

const execFileP = promisify(execFile);
const enabled = process.env.ISSUE8_MEASURE === '1';
const RTT = Number(process.env.ISSUE8_RTT_MS ?? 20);
const BUCKET = 'issue8-measure';

let server: S3TestServer;
let build: PrivateBuild;
let work: string;
let stateDir: string;
let id: string;
let archiveKey: string;
const targets: string[] = [];

/** ~3,000 source-like files (compressible, 200 B to 40 KB) in nested dirs and a few 1 MB binaries. */
async function makeProjectTree(root: string): Promise<void> {
  const words = 'const let function return import export from await async class extends interface type'.split(' ');
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let d = 0; d < 60; d++) {
    const dir = join(root, `pkg${d % 12}`, `mod${d}`);
    await mkdir(dir, { recursive: true });
    for (let f = 0; f < 50; f++) {
      const size = Math.floor(200 + rand() ** 3 * 40_000);
      let text = '';
      while (text.length < size) text += `${words[Math.floor(rand() * words.length)]} x${Math.floor(rand() * 1000)};\n`;
      await writeFile(join(dir, `f${f}.ts`), text.slice(0, size));
    }
  }
  await mkdir(join(root, 'assets'));
  for (let i = 0; i < 4; i++) await writeFile(join(root, 'assets', `blob${i}.bin`), randomBytes(1 << 20));
}

const env = () => ({
  ...process.env,
  AWS_ACCESS_KEY_ID: server.accessKeyId,
  AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
});
const cli = (args: string[]) => execFileP(build.cli, args, { env: env(), timeout: 300_000 });
const bucketFlags = () => ['--bucket', BUCKET, '--endpoint', server.endpoint];

async function readTree(dir: string): Promise<number> {
  const t = performance.now();
  await execFileP('sh', ['-c', `find "${dir}" -type f -exec cat {} + > /dev/null`], { timeout: 600_000 });
  return performance.now() - t;
}

async function lowerLog(target: string): Promise<string> {
  const rec = (await listRestores(stateDir)).find((r) => r.dir === target);
  return rec ? readFile(rec.lowerLog, 'utf8').catch(() => '') : '';
}

async function hydrationState(target: string): Promise<string | undefined> {
  const rec = (await listRestores(stateDir)).find((r) => r.dir === target);
  return (rec?.stats as { source?: { cache?: { hydration?: { state: string } } } } | undefined)?.source?.cache
    ?.hydration?.state;
}

async function scenario(
  name: string,
  flags: string[],
  hooks: { beforeRead?: (target: string) => Promise<void>; after?: (target: string) => Promise<void> } = {},
) {
  const target = join(work, name);
  await mkdir(target);
  targets.push(target);
  const mark = server.requests.length;
  const t0 = performance.now();
  await cli([
    'mount-backup',
    ...bucketFlags(),
    '--state-dir',
    stateDir,
    '--cache-size',
    '256M',
    '-q',
    ...flags,
    id,
    target,
  ]);
  const restoreMs = performance.now() - t0;
  await hooks.beforeRead?.(target);
  const readMark = server.requests.length;
  const readMs = await readTree(target);
  const gets = dataGets(server, archiveKey, mark).length;
  const readGets = dataGets(server, archiveKey, readMark).length;
  await hooks.after?.(target);
  await teardownRestore(target, { stateDir, discardWrites: true });
  const line = `${name.padEnd(22)} restore ${restoreMs.toFixed(0).padStart(5)} ms  read ${readMs.toFixed(0).padStart(6)} ms  total ${(restoreMs + readMs).toFixed(0).padStart(6)} ms  archive GETs ${gets} (${readGets} while reading)`;
  console.log(line);
  return { restoreMs, readMs, gets, readGets };
}

beforeAll(async () => {
  if (!enabled) return;
  build = await privateBuild();
  work = await tempDir('measure');
  stateDir = join(work, 'state');
  const tree = join(work, 'tree');
  await mkdir(tree);
  await makeProjectTree(tree);
  server = await startS3Server({ buckets: [BUCKET] });
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  id = (await cli(['create-backup', ...bucketFlags(), '--compression', 'lz4', tree])).stdout.trim();
  archiveKey = backupKeys('backups', id).archive;
  await execFileP('mksquashfs', [
    tree,
    join(work, 'local.sqsh'),
    '-noappend',
    '-quiet',
    '-no-progress',
    '-comp',
    'lz4',
  ]);
  server.setLatency(RTT);
  const size = (await readFile(join(work, 'local.sqsh'))).length;
  console.log(
    `tree: 3,000 files + 4 MiB of binaries; lz4 image ${(size / 2 ** 20).toFixed(1)} MiB; ${RTT} ms added per request`,
  );
}, 600_000);

afterAll(async () => {
  if (!enabled) return;
  for (const t of targets) await teardownRestore(t, { stateDir, discardWrites: true }).catch(() => undefined);
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

it.runIf(enabled)(
  `W2-like restore-then-read at ${RTT} ms added latency`,
  async () => {
    const mp = join(work, 'squashfuse');
    await mkdir(mp);
    await execFileP('squashfuse', [join(work, 'local.sqsh'), mp]);
    let localMs: number;
    try {
      localMs = await readTree(mp);
    } finally {
      await execFileP('fusermount', ['-u', mp]);
    }
    console.log(`${'squashfuse local file'.padEnd(22)} read ${localMs.toFixed(0)} ms`);
    const cold = await scenario('cold', []);
    await scenario('record', ['--record-prefetch', '--record-seconds', '300']);
    const replay = await scenario('prefetch-list', []);
    const settled = await scenario('prefetch-list-settled', [], {
      beforeRead: (target) =>
        waitUntil('prefetch done', async () => /prefetch done/.test(await lowerLog(target)), 300_000),
    });
    // The cache-dir and hydrate runs without the recorded list (it would apply to every later restore).
    await server.deleteObject(BUCKET, backupKeys('backups', id).prefetch);
    const cacheDir = join(work, 'chunk-cache');
    await scenario('fill-cache-dir', ['--cache-dir', cacheDir]);
    const warm = await scenario('warm-cache-dir', ['--cache-dir', cacheDir]);
    const hydrate = await scenario('hydrate', ['--cache-dir', join(work, 'hydrate-cache'), '--hydrate'], {
      after: async (target) => {
        const t = performance.now();
        await waitUntil('hydration done', async () => (await hydrationState(target)) === 'done', 300_000);
        console.log(
          `hydrate: done at most ${(performance.now() - t).toFixed(0)} ms after the read finished (stats every 2 s)`,
        );
      },
    });
    console.log(
      `vs squashfuse local: cold ${((cold.restoreMs + cold.readMs) / localMs).toFixed(1)}x, prefetch ${(replay.readMs / localMs).toFixed(1)}x / settled ${(settled.readMs / localMs).toFixed(1)}x (read only), warm ${(warm.readMs / localMs).toFixed(1)}x (read only), hydrate ${(hydrate.readMs / localMs).toFixed(1)}x`,
    );
    expect(warm.readGets).toBe(0);
  },
  1_800_000,
);

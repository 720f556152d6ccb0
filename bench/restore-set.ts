import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NetProxy } from '../src/testing/net-proxy.js';
import { BUCKET, type PeerId, type Profile, RECORD_SECONDS, RESTORE_PREFIX } from './config.js';
import { cpuSeconds, dropCaches, exec, peakRss, pidsServing, startMountCommand, unmount } from './mounts.js';
import { mountPeer, OUR_CLI } from './peers.js';
import { failedRun, milestonesOf, type RunResult } from './results.js';
import { CREDENTIALS, deleteObject, headObject, putObject, REGION, uploadFile } from './s3.js';
import type { StepResult } from './workload-runner.js';
import type { ImageSpec } from './workloads.js';

/**
 * W2R (issue 8's proof): W2's tree restored with `squashfs-r2 mount-backup` (lower FUSE mount +
 * fuse-overlayfs), then walked and read like W2: cold, with a recorded prefetch list, with a warm
 * --cache-dir and with --hydrate. The peers get fuse-overlayfs on top of their squashfuse mount, so
 * every row pays the same overlay; `C-bare` and `us-cachewarm-lower` walk without it, which
 * separates the overlay's cost. Each variant runs with the page cache dropped first.
 */

export interface RestoreSetContext {
  proxy: NetProxy;
  serverEndpoint: string;
  profile: Profile;
  image: ImageSpec;
  peers: PeerId[];
  /** Extra arguments for mount-backup (e.g. --cache-size 512M). */
  usArgs: string[];
  /** Runs W2's steps on a root in a child process and checks their bytes. */
  walk(root: string): Promise<StepResult[]>;
  log(m: string): void;
}

/** The lower mount publishes its stats every 2 s. */
const STATS_PUBLISH_WAIT_MS = 2_200;

/** The backup id (a UUID, as mount-backup requires) of W2's image in the bench bucket: fixed per image name. */
export function restoreBackupId(image: ImageSpec): string {
  const h = createHash('sha256').update(`squashfs-r2 bench ${image.name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const keysOf = (image: ImageSpec) => {
  const dir = `${RESTORE_PREFIX}/${restoreBackupId(image)}`;
  return { archive: `${dir}/data.sqsh`, meta: `${dir}/meta.json`, prefetch: `${dir}/prefetch.json` };
};

/** Puts W2's image where mount-backup looks for a backup (once), with a fresh meta.json every run. */
export async function ensureRestoreBackup(endpoint: string, image: ImageSpec): Promise<void> {
  const k = keysOf(image);
  if ((await headObject(endpoint, BUCKET, k.archive)) !== image.imageBytes)
    await uploadFile(endpoint, BUCKET, k.archive, image.imagePath);
  const meta = {
    id: restoreBackupId(image),
    dir: '/bench/project',
    name: 'bench W2 project tree',
    sizeBytes: image.imageBytes,
    ttl: 10 * 365 * 86400,
    createdAt: new Date().toISOString(),
  };
  await putObject(endpoint, BUCKET, k.meta, JSON.stringify(meta));
}

const ourEnv = () => ({
  ...process.env,
  AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
  AWS_REGION: REGION,
});

interface Restored {
  target: string;
  lower: string;
  lowerPid: number;
  /** Where the lower mount publishes its stats (every 2 s): FUSE operation counts. */
  statsFile: string;
  restoreMs: number;
  teardown(): Promise<void>;
}

/** `squashfs-r2 mount-backup`, timed from the command's start until it returns (dir usable). */
async function restore(
  ctx: RestoreSetContext,
  workDir: string,
  stateDir: string,
  extraArgs: string[],
): Promise<Restored> {
  const target = join(workDir, 'restored');
  await mkdir(target, { recursive: true });
  const args = [
    'mount-backup',
    restoreBackupId(ctx.image),
    target,
    '--bucket',
    BUCKET,
    '--prefix',
    RESTORE_PREFIX,
    '--endpoint',
    ctx.proxy.url,
    '--path-style',
    '--state-dir',
    stateDir,
    '--quiet',
    ...extraArgs,
    ...ctx.usArgs,
  ];
  const t0 = performance.now();
  await exec(OUR_CLI, args, ourEnv());
  const restoreMs = performance.now() - t0;
  const teardown = async () => {
    await exec(OUR_CLI, ['unmount', target, '--state-dir', stateDir, '--discard-writes'], ourEnv());
  };
  try {
    const base = (await readdir(stateDir)).find((d) => d.startsWith(`${restoreBackupId(ctx.image)}_`));
    if (!base) throw new Error(`no restore record in ${stateDir}`);
    const record = JSON.parse(await readFile(join(stateDir, base, 'restore.json'), 'utf8')) as {
      lower: string;
      lowerPid: number;
    };
    const statsFile = join(stateDir, base, 'stats.json');
    return { target, lower: record.lower, lowerPid: record.lowerPid, statsFile, restoreMs, teardown };
  } catch (e) {
    await teardown().catch(() => undefined);
    throw e;
  }
}

/** fuse-overlayfs over a peer's read-only mount, as mount-backup puts it over ours. */
async function overlayOn(lower: string, workDir: string): Promise<{ target: string; pids: number[] }> {
  const target = join(workDir, 'restored');
  const upper = join(workDir, 'upper');
  const work = join(workDir, 'work');
  for (const d of [target, upper, work]) await mkdir(d, { recursive: true });
  await startMountCommand(
    'fuse-overlayfs',
    ['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, target],
    target,
  );
  return { target, pids: await pidsServing(target) };
}

const sum = async (pids: number[], f: (pid: number) => Promise<number>) => {
  let total = 0;
  for (const pid of pids) total += await f(pid);
  return total;
};

interface Measure {
  restoreMs: number;
  root: string;
  /** The lower FUSE daemon(s): RSS and CPU. */
  lowerPids: number[];
  overlayPids: number[];
  extra?: Record<string, number>;
}

/** Walks `m.root` now and turns the numbers into a result row (requests counted since `resetStats`). */
async function measure(ctx: RestoreSetContext, peer: string, m: Measure, startPerf: number): Promise<RunResult> {
  const before = ctx.proxy.stats();
  const bytesBeforeWalk = before.bytesDown;
  const getsBeforeWalk = before.requestsByMethod.GET ?? 0;
  const steps = await ctx.walk(m.root);
  const st = ctx.proxy.stats();
  const getsAtEnd = st.requestsByMethod.GET ?? 0;
  const lowerCpu = await sum(m.lowerPids, cpuSeconds);
  return {
    profile: ctx.profile.name,
    rttMs: ctx.profile.rttMs,
    workload: 'W2R',
    peer,
    mountMs: m.restoreMs,
    steps,
    milestones: milestonesOf('W2R', m.restoreMs, steps),
    bytesDown: st.bytesDown,
    gets: getsAtEnd,
    requests: st.requests,
    connections: st.connectionsAccepted,
    mountWaves: 0,
    peakRssBytes: await sum(m.lowerPids, peakRss),
    extra: {
      ...m.extra,
      readBytesDown: st.bytesDown - bytesBeforeWalk,
      readGets: getsAtEnd - getsBeforeWalk,
      daemonCpuSeconds: lowerCpu,
      overlayCpuSeconds: await sum(m.overlayPids, cpuSeconds),
    },
    // Our requests (ms since the restore started, method, path's last part, range): what the GETs were.
    trace: peer.startsWith('us')
      ? st.log
          .slice(0, 5000)
          .map((r) =>
            `${(r.atMs - startPerf).toFixed(1)} ${r.method} ${r.target.split('?')[0]!.split('/').pop()} ${r.range ?? ''}`.trim(),
          )
      : undefined,
  };
}

const failed = (ctx: RestoreSetContext, peer: string, e: unknown): RunResult =>
  failedRun({ profile: ctx.profile.name, rttMs: ctx.profile.rttMs, workload: 'W2R', peer }, e);

/** One of our restores: fresh state dir, page cache dropped, counters reset, restore, walk, teardown. */
async function ourVariant(
  ctx: RestoreSetContext,
  peer: string,
  args: string[],
  options: { walkLower?: boolean } = {},
): Promise<RunResult> {
  const workDir = await mkdtemp(join('/tmp', `sqbench-w2r-${peer}-`));
  let r: Restored | undefined;
  try {
    await dropCaches();
    ctx.proxy.resetStats();
    const start = performance.now();
    r = await restore(ctx, workDir, join(workDir, 'state'), args);
    const result = await measure(
      ctx,
      peer,
      {
        restoreMs: r.restoreMs,
        root: options.walkLower ? r.lower : r.target,
        lowerPids: [r.lowerPid],
        overlayPids: options.walkLower ? [] : await pidsServing(r.target),
      },
      start,
    );
    // FUSE requests our lower mount answered (errors = e.g. absent xattrs): how much the overlay adds.
    await sleep(STATS_PUBLISH_WAIT_MS);
    try {
      const stats = JSON.parse(await readFile(r.statsFile, 'utf8')) as {
        fuse?: { operations: number; errors: number };
      };
      if (stats.fuse) {
        result.extra.lowerFuseOps = stats.fuse.operations;
        result.extra.lowerFuseErrors = stats.fuse.errors;
      }
    } catch {
      // no stats published: the row just lacks the counts
    }
    return result;
  } finally {
    await r?.teardown().catch((e: Error) => ctx.log(`  ${peer}: unmount failed: ${e.message}`));
    await rm(workDir, { recursive: true, force: true });
  }
}

/** A peer's squashfuse mount (A, B or C as in W2), with fuse-overlayfs on top unless `bare`. */
async function peerVariant(ctx: RestoreSetContext, peer: PeerId, bare: boolean): Promise<RunResult> {
  const name = bare ? `${peer}-bare` : `${peer}+ovl`;
  const workDir = await mkdtemp(join('/tmp', `sqbench-w2r-${peer}-`));
  let mounted: Awaited<ReturnType<typeof mountPeer>> | undefined;
  let overlay: { target: string; pids: number[] } | undefined;
  try {
    await dropCaches();
    ctx.proxy.resetStats();
    const start = performance.now();
    mounted = await mountPeer(peer, {
      proxyUrl: ctx.proxy.url,
      bucket: BUCKET,
      image: ctx.image,
      workDir,
    });
    // B's mount time is the downloader's own timing plus squashfuse (see peers.ts): add the overlay's.
    const tLower = performance.now();
    if (!bare) overlay = await overlayOn(mounted.root, join(workDir, 'ovl'));
    const restoreMs = mounted.mountMs + (performance.now() - tLower);
    return await measure(
      ctx,
      name,
      {
        restoreMs,
        root: overlay?.target ?? mounted.root,
        lowerPids: mounted.pids,
        overlayPids: overlay?.pids ?? [],
      },
      start,
    );
  } finally {
    if (overlay) await unmount(overlay.target, overlay.pids).catch(() => undefined);
    await mounted?.teardown();
    await rm(workDir, { recursive: true, force: true });
  }
}

/** All of W2R's variants for the selected peers, in an order where each one sets up the next. */
export async function runRestoreSet(ctx: RestoreSetContext): Promise<RunResult[]> {
  const out: RunResult[] = [];
  const k = keysOf(ctx.image);
  const step = async (peer: string, fn: () => Promise<RunResult>) => {
    ctx.log(`${ctx.profile.name} W2R ${peer}`);
    let r: RunResult;
    try {
      r = await fn();
    } catch (e) {
      r = failed(ctx, peer, e);
    }
    if (r.error) ctx.log(`  ${peer} FAILED: ${r.error}`);
    else
      ctx.log(
        `  ${peer}: restore ${(r.mountMs / 1000).toFixed(3)}s, total ${((r.milestones.readAll ?? Number.NaN) / 1000).toFixed(3)}s; ${r.gets} GETs (${r.extra.readGets} while walking)`,
      );
    out.push(r);
    return r;
  };
  await ensureRestoreBackup(ctx.serverEndpoint, ctx.image);
  if (ctx.peers.includes('us')) {
    const cacheDir = await mkdtemp(join('/tmp', 'sqbench-w2r-cache-'));
    const hydrateDir = await mkdtemp(join('/tmp', 'sqbench-w2r-hydrate-'));
    try {
      // (a) cold: no list, no cache dir.
      await deleteObject(ctx.serverEndpoint, BUCKET, k.prefetch);
      await step('us-cold', () => ourVariant(ctx, 'us-cold', []));
      // (b) record a list (walk, then unmount stores it), then restore with it and walk at once.
      await step('us-record', () =>
        ourVariant(ctx, 'us-record', ['--record-prefetch', '--record-seconds', String(RECORD_SECONDS)]),
      );
      const listBytes = await headObject(ctx.serverEndpoint, BUCKET, k.prefetch);
      if (listBytes === undefined) ctx.log('  us-record: no prefetch.json was stored');
      else ctx.log(`  prefetch.json: ${listBytes} bytes`);
      await step('us-prefetch', async () => {
        const r = await ourVariant(ctx, 'us-prefetch', []);
        r.extra.prefetchListBytes = listBytes ?? 0;
        return r;
      });
      // (c) warm cache dir alone: no list.
      await deleteObject(ctx.serverEndpoint, BUCKET, k.prefetch);
      await step('us-cachefill', () => ourVariant(ctx, 'us-cachefill', ['--cache-dir', cacheDir]));
      await step('us-cachewarm', () => ourVariant(ctx, 'us-cachewarm', ['--cache-dir', cacheDir]));
      await step('us-cachewarm-lower', () =>
        ourVariant(ctx, 'us-cachewarm-lower', ['--cache-dir', cacheDir], { walkLower: true }),
      );
      // (d) hydrate into a fresh cache dir, walk at once.
      await step('us-hydrate', () => ourVariant(ctx, 'us-hydrate', ['--hydrate', '--cache-dir', hydrateDir]));
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
      await rm(hydrateDir, { recursive: true, force: true });
    }
  }
  for (const peer of ['A', 'B', 'C'] as PeerId[]) {
    if (!ctx.peers.includes(peer)) continue;
    await step(`${peer}+ovl`, () => peerVariant(ctx, peer, false));
  }
  if (ctx.peers.includes('C')) await step('C-bare', () => peerVariant(ctx, 'C', true));
  return out;
}

import { spawn } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startProxy, type NetProxy } from '../src/testing/net-proxy.js';
import { startS3Server } from '../src/testing/s3-server.js';
import { renderChart } from './chart.js';
import {
  ALL_PEERS,
  ALL_WORKLOADS,
  BUCKET,
  FULL,
  MiB,
  parseProfile,
  type PeerId,
  type Profile,
  QUICK,
  READ_CONCURRENCY,
  type Sizes,
  type WorkloadId,
} from './config.js';
import { cpuSeconds, dropCaches, exec, peakRss } from './mounts.js';
import { mountPeer, type MountedPeer } from './peers.js';
import { evaluateGoals, formatGoals, formatTables, w3BytesNeeded } from './report.js';
import { failedRun, milestonesOf, requestWaves, type RunResult } from './results.js';
import { headObject, uploadFile } from './s3.js';
import type { StepResult, StepsRequest } from './workload-runner.js';
import { runRestoreSet } from './restore-set.js';
import { backupImage, type ImageSpec, projectImage, randomOffsets } from './workloads.js';

const USAGE = `usage: npm run bench -- [--quick] [--peers us,A,B,C] [--workloads W1,W1P,W2,W3,W2R] [--profiles 20ms,5ms,80ms]
                      [--data-dir DIR] [--out DIR] [--no-warm] [--server-mode r2|s3rver] [--concurrency 4] [--us-args="--log-level debug ..."]
                      [--before-cli OTHER/bin/squashfs-r2]

Runs every peer on the same data, the same local S3 server and the same proxy profile:
  A   s3fs mount of the bucket prefix + squashfuse on the image inside it
  B   parallel ranged download (8 connections x 16 MiB) + squashfuse on the local copy
  C   squashfuse on the local image file (the floor)
  us  squashfs-r2 mount straight from the server (+ us-warm: the same mount read again)
W1P is W1 as a user restores it: mount, cat of one small file, find src -type f -exec cat {} +, cat of
the big files, each phase timed from outside (issue 12's table).
W2R restores W2's tree with mount-backup (cold, recorded prefetch list, warm --cache-dir, --hydrate)
against A/B/C with fuse-overlayfs on top (--us-args go to mount-backup there).
Profiles: <rtt>ms[:<MB/s per connection>], default 20ms (100 MB/s). Data is generated once and cached.
`;

const REPO = resolve(import.meta.dirname, '..', '..');
const log = (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const BLOCK_SIZE = 128 * 1024; // mksquashfs default, used for W3's bytes-needed

interface Options {
  sizes: Sizes;
  peers: PeerId[];
  workloads: WorkloadId[];
  profiles: Profile[];
  dataDir: string;
  outDir: string;
  warm: boolean;
  usArgs: string[];
  beforeCli?: string;
  serverMode: 's3rver' | 'r2';
  concurrency: number;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      peers: { type: 'string', default: ALL_PEERS.join(',') },
      workloads: { type: 'string', default: ALL_WORKLOADS.join(',') },
      profiles: { type: 'string', default: '20ms' },
      'data-dir': { type: 'string', default: join(REPO, 'bench', '.data') },
      out: { type: 'string', default: join(REPO, 'bench', 'results') },
      'no-warm': { type: 'boolean', default: false },
      'us-args': { type: 'string', default: '' },
      'before-cli': { type: 'string' },
      'server-mode': { type: 'string', default: 'r2' },
      concurrency: { type: 'string', default: String(READ_CONCURRENCY) },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return undefined;
  }
  const list = <T extends string>(s: string, allowed: readonly T[], what: string): T[] => {
    const items = s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    for (const i of items)
      if (!allowed.includes(i as T)) throw new Error(`unknown ${what} "${i}" (one of ${allowed.join(', ')})`);
    return items as T[];
  };
  return {
    sizes: values.quick ? QUICK : FULL,
    peers: list(values.peers, [...ALL_PEERS, 'before'], 'peer'),
    beforeCli: values['before-cli'] === undefined ? undefined : resolve(values['before-cli']),
    workloads: list(values.workloads, ALL_WORKLOADS, 'workload'),
    profiles: values.profiles.split(',').map(parseProfile),
    dataDir: resolve(values['data-dir']),
    outDir: resolve(values.out),
    warm: !values['no-warm'],
    usArgs: values['us-args'].split(' ').filter(Boolean),
    serverMode: values['server-mode'] === 's3rver' ? 's3rver' : 'r2',
    concurrency: Math.max(1, Number(values.concurrency) || READ_CONCURRENCY),
  };
}

/** Runs the workload's steps in a child process (see workload-runner.ts for why). */
function runSteps(req: StepsRequest): Promise<StepResult[]> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'workload-runner.js')], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolvePromise(JSON.parse(out) as StepResult[]);
      else reject(new Error(`workload runner exit ${code}: ${err.trim().slice(0, 500)}`));
    });
    child.stdin.end(JSON.stringify(req));
  });
}

function stepsRequest(w: WorkloadId, root: string, image: ImageSpec, sizes: Sizes, concurrency: number): StepsRequest {
  if (w === 'W1') return { kind: 'W1', root, smallFiles: image.smallFiles, bigFiles: image.bigFiles, concurrency };
  if (w === 'W1P') {
    const smallTreeDir = image.smallFiles[0]!.split('/')[0]!;
    return { kind: 'W1P', root, firstFile: image.smallFiles[0]!, smallTreeDir, bigFiles: image.bigFiles };
  }
  if (w === 'W2' || w === 'W2R') return { kind: 'W2', root, concurrency };
  return {
    kind: 'W3',
    root,
    file: image.bigFiles[0]!,
    offsets: randomOffsets(sizes.bigFileBytes, sizes.randomReads, sizes.randomReadBytes),
    bytes: sizes.randomReadBytes,
  };
}

/** Checks the bytes each step read against what the image holds: a peer that reads wrong fails. */
function checkSteps(w: WorkloadId, steps: StepResult[], image: ImageSpec, sizes: Sizes): void {
  const expect: Record<string, number> =
    w === 'W1'
      ? { smallTree: image.smallBytes, bigFiles: image.bigBytes }
      : w === 'W1P'
        ? { smallTree: image.smallBytes } // the big files go to /dev/null (cat's exit status is checked)
        : w === 'W2' || w === 'W2R'
          ? { readAll: image.smallBytes, findStat: 0 }
          : { randomReads: sizes.randomReads * sizes.randomReadBytes };
  for (const s of steps) {
    if (expect[s.name] !== undefined && s.bytes !== expect[s.name]) {
      throw new Error(`${s.name} read ${s.bytes} bytes, expected ${expect[s.name]}`);
    }
  }
  if (w === 'W2' || w === 'W2R') {
    const find = steps.find((s) => s.name === 'findStat');
    if (find?.entries !== image.entries)
      throw new Error(`find saw ${find?.entries} entries, expected ${image.entries}`);
  }
}

const epoch = (perfMs: number) => performance.timeOrigin + perfMs;

interface RunContext {
  opts: Options;
  proxy: NetProxy;
  profile: Profile;
  workload: WorkloadId;
  image: ImageSpec;
}

function resultOf(
  ctx: RunContext,
  peer: string,
  mountMs: number,
  steps: StepResult[],
  mountedPerf: number,
  rss: number,
  extra: Record<string, number>,
): RunResult {
  const st = ctx.proxy.stats();
  const times = st.log.map((r) => epoch(r.atMs));
  const mountWaves = requestWaves(
    times.filter((t) => t <= epoch(mountedPerf)),
    ctx.profile.rttMs,
  );
  const first = steps[0];
  const firstFileWaves =
    (ctx.workload === 'W1' || ctx.workload === 'W1P') &&
    first?.startEpochMs !== undefined &&
    first.endEpochMs !== undefined
      ? requestWaves(
          times.filter((t) => t >= first.startEpochMs! && t <= first.endEpochMs!),
          ctx.profile.rttMs,
        )
      : undefined;
  return {
    profile: ctx.profile.name,
    rttMs: ctx.profile.rttMs,
    workload: ctx.workload,
    peer,
    mountMs,
    steps,
    milestones: milestonesOf(ctx.workload, mountMs, steps),
    bytesDown: st.bytesDown,
    gets: st.requestsByMethod.GET ?? 0,
    requests: st.requests,
    connections: st.connectionsAccepted,
    mountWaves: peer === 'us-warm' ? 0 : mountWaves,
    firstFileWaves,
    peakRssBytes: rss,
    extra,
    // Our own requests, for explaining the numbers (ms since the start of mounting, method, range).
    trace: peer.startsWith('us')
      ? st.log
          .slice(0, 5000)
          .map((r) => `${(r.atMs - (mountedPerf - mountMs)).toFixed(1)} ${r.method} ${r.range ?? ''}`.trim())
      : undefined,
  };
}

async function sumCpu(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) total += await cpuSeconds(pid);
  return total;
}

async function sumRss(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) total += await peakRss(pid);
  return total;
}

async function runPeer(ctx: RunContext, peer: PeerId): Promise<RunResult[]> {
  const workDir = await mkdtemp(join('/tmp', `sqbench-${peer}-`));
  const out: RunResult[] = [];
  let mounted: MountedPeer | undefined;
  try {
    await dropCaches();
    ctx.proxy.resetStats();
    const start = performance.now();
    mounted = await mountPeer(peer, {
      proxyUrl: ctx.proxy.url,
      bucket: BUCKET,
      image: ctx.image,
      workDir,
      ourMountArgs: ctx.opts.usArgs,
      beforeCli: ctx.opts.beforeCli,
    });
    const mountedAt = start + mounted.mountMs;
    const firstRequest = ctx.proxy.stats().log[0];
    if (firstRequest && firstRequest.atMs <= mountedAt) {
      // Local start-up before the first request vs. time spent once the network is involved.
      mounted.extra.firstRequestMs = firstRequest.atMs - start;
      mounted.extra.mountedAfterFirstRequestMs = mountedAt - firstRequest.atMs;
    }
    const steps = await runSteps(
      stepsRequest(ctx.workload, mounted.root, ctx.image, ctx.opts.sizes, ctx.opts.concurrency),
    );
    checkSteps(ctx.workload, steps, ctx.image, ctx.opts.sizes);
    const cpuCold = await sumCpu(mounted.pids);
    mounted.extra.daemonCpuSeconds = cpuCold;
    out.push(resultOf(ctx, peer, mounted.mountMs, steps, mountedAt, await sumRss(mounted.pids), mounted.extra));
    // W1P compares cold restores only (W1 has the warm pass).
    if (peer === 'us' && ctx.opts.warm && ctx.workload !== 'W1P') {
      // The same mount read again; the page cache is dropped so this measures the mount's own cache.
      await dropCaches();
      ctx.proxy.resetStats();
      const warmStart = performance.now();
      const warmSteps = await runSteps(
        stepsRequest(ctx.workload, mounted.root, ctx.image, ctx.opts.sizes, ctx.opts.concurrency),
      );
      checkSteps(ctx.workload, warmSteps, ctx.image, ctx.opts.sizes);
      const warmCpu = (await sumCpu(mounted.pids)) - cpuCold;
      out.push(
        resultOf(ctx, 'us-warm', 0, warmSteps, warmStart, await sumRss(mounted.pids), { daemonCpuSeconds: warmCpu }),
      );
    }
  } catch (e) {
    out.push(failedRun({ profile: ctx.profile.name, rttMs: ctx.profile.rttMs, workload: ctx.workload, peer }, e));
  } finally {
    await mounted?.teardown();
    await rm(workDir, { recursive: true, force: true });
  }
  return out;
}

async function machine(): Promise<Record<string, string>> {
  const version = async (cmd: string, args: string[]) =>
    (await exec(cmd, args).catch((e: Error) => e.message)).split('\n')[0]!.trim();
  return {
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: release(),
    node: process.version,
    s3fs: await version('s3fs', ['--version']),
    squashfuse: await exec('sh', ['-c', 'squashfuse --version 2>&1 | head -1']).then(
      (s) => s.trim(),
      () => '?',
    ),
    mksquashfs: await version('mksquashfs', ['-version']),
    commit: await version('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']),
    loadavgAtEnd: loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
}

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv);
  if (!opts) return 0;
  await mkdir(opts.dataDir, { recursive: true });
  await mkdir(opts.outDir, { recursive: true });
  const images: Partial<Record<WorkloadId, ImageSpec>> = {};
  if (['W1', 'W1P', 'W3'].some((w) => opts.workloads.includes(w as WorkloadId)))
    images.W1 = await backupImage(opts.dataDir, opts.sizes, log);
  if (opts.workloads.includes('W1P')) images.W1P = images.W1;
  if (opts.workloads.includes('W2') || opts.workloads.includes('W2R'))
    images.W2 = await projectImage(opts.dataDir, opts.sizes, log);
  if (opts.workloads.includes('W2R')) images.W2R = images.W2;
  if (opts.workloads.includes('W3')) images.W3 = images.W1;

  const server = await startS3Server({ directory: join(opts.dataDir, 's3'), buckets: [BUCKET], mode: opts.serverMode });
  let proxy: NetProxy | undefined;
  const results: RunResult[] = [];
  const started = new Date();
  const loadAtStart = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  try {
    for (const image of new Set(Object.values(images))) {
      if ((await headObject(server.endpoint, BUCKET, image.key)) !== image.imageBytes) {
        log(`uploading ${image.key} (${(image.imageBytes / MiB).toFixed(1)} MiB)`);
        await uploadFile(server.endpoint, BUCKET, image.key, image.imagePath);
      }
    }
    proxy = await startProxy({ target: { host: '127.0.0.1', port: server.port }, rttMs: 0 });
    for (const profile of opts.profiles) {
      proxy.setProfile({ rttMs: profile.rttMs, bandwidthBytesPerSec: profile.bandwidthBytesPerSec });
      for (const workload of opts.workloads) {
        if (workload === 'W2R') {
          const image = images.W2R!;
          const walk = async (root: string) => {
            const steps = await runSteps(stepsRequest('W2R', root, image, opts.sizes, opts.concurrency));
            checkSteps('W2R', steps, image, opts.sizes);
            return steps;
          };
          results.push(
            ...(await runRestoreSet({
              proxy,
              serverEndpoint: server.endpoint,
              profile,
              image,
              peers: opts.peers,
              usArgs: opts.usArgs,
              walk,
              log,
            })),
          );
          continue;
        }
        for (const peer of opts.peers) {
          log(`${profile.name} ${workload} ${peer}`);
          const r = await runPeer({ opts, proxy, profile, workload, image: images[workload]! }, peer);
          for (const x of r) {
            if (x.error) log(`  ${x.peer} FAILED: ${x.error}`);
            else
              log(
                `  ${x.peer}: ${Object.entries(x.milestones)
                  .map(([k, v]) => `${k} ${(v / 1000).toFixed(3)}s`)
                  .join(', ')}; ${(x.bytesDown / MiB).toFixed(1)} MiB, ${x.gets} GETs`,
              );
          }
          results.push(...r);
        }
      }
    }
  } finally {
    await proxy?.close();
    await server.close();
  }

  const w3Needed = images.W1
    ? w3BytesNeeded(
        randomOffsets(opts.sizes.bigFileBytes, opts.sizes.randomReads, opts.sizes.randomReadBytes),
        opts.sizes.randomReadBytes,
        BLOCK_SIZE,
      )
    : undefined;
  const goals = evaluateGoals(results, opts.profiles, opts.workloads.includes('W3') ? w3Needed : undefined);
  const text = `${formatTables(results, opts.profiles, opts.workloads, images)}\n\nGoals (issues 6, 8 and 12):\n${formatGoals(goals)}\n`;
  process.stdout.write(`\n${text}`);

  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const title = `squashfs-r2 bench (${opts.sizes.label}) ${started.toISOString().slice(0, 16)}Z`;
  const json = {
    started: started.toISOString(),
    command: `npm run bench -- ${argv.join(' ')}`.trim(),
    machine: { ...(await machine()), loadavgAtStart: loadAtStart },
    sizes: opts.sizes,
    options: { concurrency: opts.concurrency, serverMode: opts.serverMode, warm: opts.warm, usArgs: opts.usArgs },
    profiles: opts.profiles,
    images: Object.fromEntries(
      Object.entries(images).map(([k, v]) => [
        k,
        {
          name: v.name,
          imageBytes: v.imageBytes,
          compression: v.compression,
          smallFiles: v.smallFiles.length,
          bigFiles: v.bigFiles.length,
          smallBytes: v.smallBytes,
          bigBytes: v.bigBytes,
          entries: v.entries,
        },
      ]),
    ),
    w3BytesNeeded: w3Needed,
    results,
    goals,
  };
  await writeFile(join(opts.outDir, `${stamp}.json`), JSON.stringify(json, null, 1));
  await writeFile(join(opts.outDir, `${stamp}.svg`), renderChart(results, opts.profiles, opts.workloads, title));
  log(`wrote ${join(opts.outDir, `${stamp}.json`)} and .svg`);
  return results.some((r) => r.error) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`bench: ${e.message}\n`);
    process.exitCode = 1;
  },
);

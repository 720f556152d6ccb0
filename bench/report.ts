import { MiB, type Profile, type WorkloadId } from './config.js';
import { find, MILESTONES, type RunResult } from './results.js';
import type { ImageSpec } from './workloads.js';

/** The text table (stdout and docs) and the goals of issue 6, evaluated from a run's results. */

const PEER_ORDER = ['before', 'us', 'us-warm', 'A', 'B', 'C'];
const RATIOS: [string, string, string][] = [
  ['us/A', 'us', 'A'],
  ['us/B', 'us', 'B'],
  ['us-warm/C', 'us-warm', 'C'],
];

const sec = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? '-' : (ms / 1000).toFixed(3));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b) ? '-' : (a / b).toFixed(2);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n');
}

export function workloadTitle(w: WorkloadId, image: ImageSpec | undefined): string {
  const size = image ? `${(image.imageBytes / MiB).toFixed(1)} MiB ${image.compression} image` : '';
  if (w === 'W1P')
    return `W1P restore phases, each a plain command timed from outside (${size}: ${image?.bigFiles.length} big files + ${image?.smallFiles.length} small files)`;
  if (w === 'W1')
    return `W1 backup (${size}: ${image?.bigFiles.length} big files + ${image?.smallFiles.length} small files)`;
  if (w === 'W2R') return `W2R restore-then-read (mount-backup of W2's ${size}; peers with fuse-overlayfs on top)`;
  if (w === 'W2') return `W2 project tree (${size}: ${image?.smallFiles.length} files, ${image?.entries} entries)`;
  return `W3 random reads (W1's image, across ${image?.bigFiles[0]})`;
}

/** One block per (profile, workload): milestones in seconds, then bytes, GETs, RSS. */
export function formatTables(
  results: RunResult[],
  profiles: Profile[],
  workloads: WorkloadId[],
  images: Partial<Record<WorkloadId, ImageSpec>>,
): string {
  const out: string[] = [];
  for (const p of profiles) {
    for (const w of workloads) {
      if (w === 'W2R') {
        const t = formatRestoreTable(results, p, images.W2R);
        if (t) out.push(t, '');
        continue;
      }
      if (w === 'W1P') {
        const t = formatPhaseTable(results, p, images.W1P);
        if (t) out.push(t, '');
        continue;
      }
      const peers = PEER_ORDER.filter((peer) =>
        results.some((r) => r.profile === p.name && r.workload === w && r.peer === peer),
      );
      if (peers.length === 0) continue;
      const get = (peer: string) => find(results, p, w, peer);
      const rows: string[][] = [['', ...peers, ...RATIOS.map((r) => r[0])]];
      for (const m of MILESTONES[w]) {
        rows.push([
          `${m.label} (s)`,
          ...peers.map((peer) => (peer === 'us-warm' && m.key === 'mounted' ? '-' : sec(get(peer)?.milestones[m.key]))),
          ...RATIOS.map(([, a, b]) =>
            m.key === 'mounted' && a === 'us-warm' ? '-' : ratio(get(a)?.milestones[m.key], get(b)?.milestones[m.key]),
          ),
        ]);
      }
      const num = (label: string, f: (r: RunResult) => string) =>
        rows.push([
          label,
          ...peers.map((peer) => {
            const r = get(peer);
            return r ? f(r) : '-';
          }),
          '',
          '',
          '',
        ]);
      num('MiB fetched', (r) => (r.bytesDown / MiB).toFixed(1));
      num('GETs', (r) => String(r.gets));
      num('connections', (r) => String(r.connections));
      num('request waves to mount', (r) => (r.peer === 'us-warm' ? '-' : String(r.mountWaves)));
      num('peak RSS (MiB)', (r) => (r.peakRssBytes / MiB).toFixed(1));
      num('daemon CPU (s)', (r) =>
        r.extra.daemonCpuSeconds === undefined ? '-' : r.extra.daemonCpuSeconds.toFixed(2),
      );
      const errors = peers
        .map((peer) => results.find((r) => r.profile === p.name && r.workload === w && r.peer === peer && r.error))
        .filter(Boolean);
      out.push(
        `== ${workloadTitle(w, images[w === 'W3' ? 'W1' : w])}; profile ${p.name} (RTT ${p.rttMs} ms, ${(p.bandwidthBytesPerSec / 1e6).toFixed(0)} MB/s per connection)`,
      );
      out.push(table(rows));
      for (const e of errors) out.push(`!! ${e!.peer}: ${e!.error}`);
      out.push('');
    }
  }
  out.push('Times are cumulative from the start of mounting; ratios are time ratios (below 1: "us" is faster).');
  return out.join('\n');
}

/** W1P's phases: the time of each step alone (not cumulative), then their sum. */
const PHASES: { label: string; of: (r: RunResult) => number | undefined }[] = [
  { label: 'mount (B: download + squashfuse)', of: (r) => r.mountMs },
  { label: 'first small file (cat)', of: (r) => r.steps.find((s) => s.name === 'firstFile')?.ms },
  { label: 'small tree (find src -type f -exec cat)', of: (r) => r.steps.find((s) => s.name === 'smallTree')?.ms },
  { label: 'four big files (cat)', of: (r) => r.steps.find((s) => s.name === 'bigFiles')?.ms },
  { label: 'total', of: (r) => r.milestones.everything },
];

/** Seconds per phase of W1P for each peer, with us/A and us/B per phase. */
export function formatPhaseTable(results: RunResult[], p: Profile, image: ImageSpec | undefined): string | undefined {
  const peers = ['before', 'us', 'A', 'B', 'C'].filter((peer) => find(results, p, 'W1P', peer));
  if (peers.length === 0) return undefined;
  const get = (peer: string) => find(results, p, 'W1P', peer);
  // us/before only when an earlier build ran in the same run (--before-cli).
  const against = ['A', 'B', ...(get('before') ? ['before'] : [])];
  const rows: string[][] = [['', ...peers, ...against.map((o) => `us/${o}`)]];
  for (const phase of PHASES) {
    const us = get('us');
    rows.push([
      `${phase.label} (s)`,
      ...peers.map((peer) => sec(phase.of(get(peer)!))),
      ...against.map((o) => ratio(us && phase.of(us), get(o) && phase.of(get(o)!))),
    ]);
  }
  const num = (label: string, f: (r: RunResult) => string) =>
    rows.push([label, ...peers.map((peer) => f(get(peer)!)), ...against.map(() => '')]);
  num('MiB fetched', (r) => (r.bytesDown / MiB).toFixed(1));
  num('GETs', (r) => String(r.gets));
  num('peak RSS (MiB)', (r) => (r.peakRssBytes / MiB).toFixed(1));
  num('daemon CPU (s)', (r) => (r.extra.daemonCpuSeconds === undefined ? '-' : r.extra.daemonCpuSeconds.toFixed(2)));
  const failed = results.filter((r) => r.profile === p.name && r.workload === 'W1P' && r.error);
  return [
    `== ${workloadTitle('W1P', image)}; profile ${p.name} (RTT ${p.rttMs} ms, ${(p.bandwidthBytesPerSec / 1e6).toFixed(0)} MB/s per connection)`,
    table(rows),
    'Each phase alone (not cumulative); total = their sum.',
    ...failed.map((r) => `!! ${r.peer}: ${r.error}`),
  ].join('\n');
}

/** W2R's variants in table order; the ratio column is against C+ovl (same overlay as ours). */
export const RESTORE_ORDER = [
  'us-cold',
  'us-record',
  'us-prefetch',
  'us-cachefill',
  'us-cachewarm',
  'us-cachewarm-lower',
  'us-hydrate',
  'A+ovl',
  'B+ovl',
  'C+ovl',
  'C-bare',
];

/** One row per W2R variant: restore, walk and read times, total, requests (all / while walking), memory, CPU. */
export function formatRestoreTable(results: RunResult[], p: Profile, image: ImageSpec | undefined): string | undefined {
  const rows = RESTORE_ORDER.map((peer) => ({
    peer,
    r: results.find((x) => x.profile === p.name && x.workload === 'W2R' && x.peer === peer),
  })).filter((x) => x.r);
  if (rows.length === 0) return undefined;
  const c = find(results, p, 'W2R', 'C+ovl');
  const cBare = find(results, p, 'W2R', 'C-bare');
  const header = [
    '',
    'restore s',
    'find+stat s',
    'read s',
    'total s',
    'x C+ovl',
    'x C-bare',
    'GETs',
    'GETs walking',
    'MiB',
    'MiB walking',
    'lower RSS MiB',
    'lower CPU s',
    'ovl CPU s',
    'lower FUSE ops',
  ];
  const body = rows.map(({ peer, r }) => {
    if (!r || r.error) return [peer, 'FAILED'];
    const find1 = r.steps.find((s) => s.name === 'findStat')?.ms;
    const read = r.steps.find((s) => s.name === 'readAll')?.ms;
    return [
      peer,
      sec(r.mountMs),
      sec(find1),
      sec(read),
      sec(r.milestones.readAll),
      ratio(r.milestones.readAll, c?.milestones.readAll),
      ratio(r.milestones.readAll, cBare?.milestones.readAll),
      String(r.gets),
      String(r.extra.readGets ?? '-'),
      (r.bytesDown / MiB).toFixed(1),
      ((r.extra.readBytesDown ?? 0) / MiB).toFixed(1),
      (r.peakRssBytes / MiB).toFixed(1),
      (r.extra.daemonCpuSeconds ?? 0).toFixed(2),
      (r.extra.overlayCpuSeconds ?? 0).toFixed(2),
      r.extra.lowerFuseOps === undefined ? '-' : `${r.extra.lowerFuseOps} (${r.extra.lowerFuseErrors} err)`,
    ];
  });
  return [
    `== ${workloadTitle('W2R', image)}; profile ${p.name} (RTT ${p.rttMs} ms, ${(p.bandwidthBytesPerSec / 1e6).toFixed(0)} MB/s per connection)`,
    table([
      header,
      ...body.map((r) => (r.length === header.length ? r : [...r, ...header.slice(r.length).map(() => '')])),
    ]),
    ...rows.filter(({ r }) => r?.error).map(({ peer, r }) => `!! ${peer}: ${r!.error}`),
  ].join('\n');
}

export interface GoalCheck {
  profile: string;
  goal: string;
  met: boolean | undefined;
  measured: string;
}

/** Bytes W3 needs: the distinct data blocks its reads fall in (random data is stored uncompressed). */
export function w3BytesNeeded(offsets: number[], readBytes: number, blockSize: number): number {
  const blocks = new Set<number>();
  for (const off of offsets)
    for (let b = Math.floor(off / blockSize); b <= Math.floor((off + readBytes - 1) / blockSize); b++) blocks.add(b);
  return blocks.size * blockSize;
}

export function evaluateGoals(results: RunResult[], profiles: Profile[], w3Needed: number | undefined): GoalCheck[] {
  const checks: GoalCheck[] = [];
  for (const p of profiles) {
    const us1 = find(results, p, 'W1', 'us');
    const add = (goal: string, met: boolean | undefined, measured: string) =>
      checks.push({ profile: p.name, goal, met, measured });
    if (us1) {
      const startup = us1.extra.firstRequestMs;
      const net = us1.extra.mountedAfterFirstRequestMs;
      add(
        'mount ready within 2 round trips',
        us1.mountWaves <= 2,
        `${us1.mountWaves} request waves; ${sec(us1.mountMs)} s in all: ${sec(startup)} s before the first request, ${sec(net)} s after it (${net === undefined ? '?' : (net / p.rttMs).toFixed(1)} RTTs)`,
      );
      if (us1.firstFileWaves !== undefined)
        add(
          'first small file within 1 more round trip',
          us1.firstFileWaves <= 1,
          `${us1.firstFileWaves} request waves, ${sec(us1.milestones.firstFile! - us1.mountMs)} s after mounted`,
        );
    }
    const a1 = find(results, p, 'W1', 'A');
    const b1 = find(results, p, 'W1', 'B');
    if (us1 && b1) {
      const x = b1.milestones.firstFile! / us1.milestones.firstFile!;
      add(
        'W1 time to first file >= 10x faster than B',
        x >= 10,
        `${x.toFixed(1)}x (${sec(us1.milestones.firstFile)} s vs ${sec(b1.milestones.firstFile)} s)`,
      );
      const e = us1.milestones.everything! / b1.milestones.everything!;
      add(
        'W1 read everything no slower than B',
        e <= 1,
        `us/B = ${e.toFixed(2)} (${sec(us1.milestones.everything)} s vs ${sec(b1.milestones.everything)} s)`,
      );
    }
    if (us1 && a1) {
      const x = a1.milestones.firstFile! / us1.milestones.firstFile!;
      add(
        'W1 time to first file >= 3x faster than A',
        x >= 3,
        `${x.toFixed(1)}x (${sec(us1.milestones.firstFile)} s vs ${sec(a1.milestones.firstFile)} s)`,
      );
    }
    const usP = find(results, p, 'W1P', 'us');
    const aP = find(results, p, 'W1P', 'A');
    const bP = find(results, p, 'W1P', 'B');
    const treeMs = (r: RunResult) => r.steps.find((s) => s.name === 'smallTree')?.ms ?? Number.NaN;
    if (usP && aP) {
      const x = treeMs(usP) / treeMs(aP);
      add(
        'W1P small tree (find -exec cat) faster than A',
        x < 1,
        `us/A = ${x.toFixed(2)} (${sec(treeMs(usP))} s vs ${sec(treeMs(aP))} s)`,
      );
    }
    if (usP && bP) {
      const x = usP.milestones.everything! / bP.milestones.everything!;
      add(
        'W1P total (mount + every phase) no slower than B',
        x <= 1,
        `us/B = ${x.toFixed(2)} (${sec(usP.milestones.everything)} s vs ${sec(bP.milestones.everything)} s)`,
      );
    }
    const us2 = find(results, p, 'W2', 'us');
    const a2 = find(results, p, 'W2', 'A');
    if (us2 && a2) {
      const x = a2.milestones.readAll! / us2.milestones.readAll!;
      add(
        'W2 >= 5x faster than A',
        x >= 5,
        `${x.toFixed(1)}x (${sec(us2.milestones.readAll)} s vs ${sec(a2.milestones.readAll)} s)`,
      );
    }
    const us3 = find(results, p, 'W3', 'us');
    if (us3 && w3Needed) {
      const x = us3.bytesDown / w3Needed;
      add(
        'W3 fetched bytes within 2x of the bytes needed',
        x <= 2,
        `${x.toFixed(2)}x (${(us3.bytesDown / MiB).toFixed(2)} MiB fetched incl. mount, ${(w3Needed / MiB).toFixed(2)} MiB of data blocks needed)`,
      );
    }
    const cOvl = find(results, p, 'W2R', 'C+ovl');
    const cBare = find(results, p, 'W2R', 'C-bare');
    for (const [peer, what] of [
      ['us-prefetch', 'W2R (b) recorded prefetch list'],
      ['us-cachewarm', 'W2R (c) warm --cache-dir'],
    ] as const) {
      const us = find(results, p, 'W2R', peer);
      if (us && (cOvl || cBare)) {
        const x = cOvl ? us.milestones.readAll! / cOvl.milestones.readAll! : undefined;
        const xb = cBare ? us.milestones.readAll! / cBare.milestones.readAll! : undefined;
        add(
          `${what}: restore+walk within 1.5x of C`,
          x !== undefined ? x <= 1.5 : xb! <= 1.5,
          `${x === undefined ? '' : `${x.toFixed(2)}x C+ovl (${sec(us.milestones.readAll)} s vs ${sec(cOvl?.milestones.readAll)} s)`}${xb === undefined ? '' : `; ${xb.toFixed(2)}x C-bare (${sec(cBare?.milestones.readAll)} s)`}`,
        );
      }
    }
    for (const w of ['W1', 'W2'] as WorkloadId[]) {
      const warm = find(results, p, w, 'us-warm');
      const c = find(results, p, w, 'C');
      const key = w === 'W1' ? 'everything' : 'readAll';
      if (warm && c) {
        // us-warm has no mount time; compare the reading part with C's.
        const cRead = c.milestones[key]! - c.mountMs;
        const x = cRead / warm.milestones[key]!;
        add(
          `${w} us-warm >= 0.8x C (reading)`,
          x >= 0.8,
          `${x.toFixed(2)}x (${sec(warm.milestones[key])} s vs ${sec(cRead)} s)`,
        );
      }
    }
  }
  return checks;
}

export function formatGoals(checks: GoalCheck[]): string {
  const rows = [
    ['profile', 'goal', 'met', 'measured'],
    ...checks.map((c) => [c.profile, c.goal, c.met === undefined ? '?' : c.met ? 'yes' : 'NO', c.measured]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 3 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

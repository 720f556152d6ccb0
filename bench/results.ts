import type { Profile, WorkloadId } from './config.js';
import type { StepResult } from './workload-runner.js';

/** One peer on one workload under one profile: what the table, the chart and the goals read. */
export interface RunResult {
  profile: string;
  rttMs: number;
  workload: WorkloadId;
  peer: string;
  error?: string;
  /** Wall time until the mountpoint served the image (0 for us-warm: already mounted). */
  mountMs: number;
  steps: StepResult[];
  /** Cumulative wall time since the start of mounting, per milestone, in ms. */
  milestones: Record<string, number>;
  /** Server -> client bytes through the proxy (headers included) and requests seen. */
  bytesDown: number;
  gets: number;
  requests: number;
  connections: number;
  /** Sequential request waves (a wave starts when a request comes > RTT/2 after the wave's first). */
  mountWaves: number;
  firstFileWaves?: number;
  /** Peak RSS (VmHWM) summed over the peer's FUSE daemons, bytes. */
  peakRssBytes: number;
  extra: Record<string, number>;
  trace?: string[];
}

/** The row of a peer whose run failed: the error, and no figures. */
export function failedRun(base: Pick<RunResult, 'profile' | 'rttMs' | 'workload' | 'peer'>, e: unknown): RunResult {
  return {
    ...base,
    error: (e as Error).message,
    mountMs: Number.NaN,
    steps: [],
    milestones: {},
    bytesDown: 0,
    gets: 0,
    requests: 0,
    connections: 0,
    mountWaves: 0,
    peakRssBytes: 0,
    extra: {},
  };
}

export const MILESTONES: Record<WorkloadId, { key: string; label: string }[]> = {
  W1: [
    { key: 'mounted', label: 'mounted' },
    { key: 'firstFile', label: 'first small file read' },
    { key: 'smallTree', label: 'small tree read' },
    { key: 'everything', label: 'everything read' },
  ],
  W1P: [
    { key: 'mounted', label: 'mounted' },
    { key: 'firstFile', label: 'first small file (cat)' },
    { key: 'smallTree', label: 'small tree (find -exec cat)' },
    { key: 'everything', label: 'four big files (cat)' },
  ],
  W2: [
    { key: 'mounted', label: 'mounted' },
    { key: 'findStat', label: 'find + stat all' },
    { key: 'readAll', label: 'then every file read' },
  ],
  W3: [
    { key: 'mounted', label: 'mounted' },
    { key: 'randomReads', label: '64 random 4 KiB reads done' },
  ],
  W2R: [
    { key: 'mounted', label: 'restored (dir usable)' },
    { key: 'findStat', label: 'find + stat all' },
    { key: 'readAll', label: 'then every file read' },
  ],
};

/** Milestones are cumulative: mount time plus the steps so far. */
export function milestonesOf(workload: WorkloadId, mountMs: number, steps: StepResult[]): Record<string, number> {
  const out: Record<string, number> = { mounted: mountMs };
  let t = mountMs;
  const byName = new Map(steps.map((s) => [s.name, s.ms]));
  const order =
    workload === 'W1' || workload === 'W1P'
      ? ['firstFile', 'smallTree', 'bigFiles']
      : workload === 'W2' || workload === 'W2R'
        ? ['findStat', 'readAll']
        : ['randomReads'];
  for (const name of order) {
    t += byName.get(name) ?? Number.NaN;
    out[name === 'bigFiles' ? 'everything' : name] = t;
  }
  return out;
}

/** Counts sequential request waves in a window of request times (ms, any common clock). */
export function requestWaves(times: number[], rttMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let waves = 0;
  let waveStart = Number.NEGATIVE_INFINITY;
  for (const t of sorted) {
    if (t - waveStart > Math.max(1, rttMs / 2)) {
      waves++;
      waveStart = t;
    }
  }
  return waves;
}

export function find(results: RunResult[], p: Profile | string, w: WorkloadId, peer: string): RunResult | undefined {
  const name = typeof p === 'string' ? p : p.name;
  return results.find((r) => r.profile === name && r.workload === w && r.peer === peer && !r.error);
}

/**
 * What the benchmark runs: network profiles, workload sizes, peers. One place, so the report and the
 * harness agree on the numbers.
 */

export const MiB = 1024 * 1024;

export interface Profile {
  name: string;
  rttMs: number;
  /** Per connection and direction. */
  bandwidthBytesPerSec: number;
}

/** ~93 MB/s was measured for one stream from R2; 100 MB/s per connection is the default cap. */
export const DEFAULT_BANDWIDTH = 100e6;

/** "20ms" or "20ms:50" (RTT in ms, optional MB/s per connection). */
export function parseProfile(spec: string): Profile {
  const m = /^(\d+(?:\.\d+)?)ms(?::(\d+(?:\.\d+)?))?$/.exec(spec.trim());
  if (!m) throw new Error(`bad profile "${spec}" (expected e.g. 20ms or 20ms:100 for 100 MB/s)`);
  const bw = m[2] ? Number(m[2]) * 1e6 : DEFAULT_BANDWIDTH;
  return { name: spec.trim(), rttMs: Number(m[1]), bandwidthBytesPerSec: bw };
}

/**
 * W2R: W2's tree restored with mount-backup (issue 8), against the peers with fuse-overlayfs on top.
 * W1P: W1 as a user restores it (issue 12): each phase a plain command (cat, find -exec cat), timed from outside.
 */
export type WorkloadId = 'W1' | 'W1P' | 'W2' | 'W3' | 'W2R';
export const ALL_WORKLOADS: WorkloadId[] = ['W1', 'W1P', 'W2', 'W3', 'W2R'];

/** `before`: our mount command from another checkout (--before-cli), for before/after in one run. */
export type PeerId = 'us' | 'before' | 'A' | 'B' | 'C';
export const ALL_PEERS: PeerId[] = ['us', 'A', 'B', 'C'];

export const PEER_LABELS: Record<string, string> = {
  A: 'A: s3fs + squashfuse',
  B: 'B: download + squashfuse',
  C: 'C: squashfuse, local file',
  us: 'us: squashfs-r2 (cold)',
  'us-warm': 'us-warm: same mount again',
  'us-cold': 'W2R (a): mount-backup, cold',
  'us-record': 'W2R: recording run (--record-prefetch)',
  'us-prefetch': 'W2R (b): mount-backup with the recorded prefetch.json',
  'us-cachefill': 'W2R: --cache-dir fill run',
  'us-cachewarm': 'W2R (c): mount-backup with a warm --cache-dir',
  'us-cachewarm-lower': 'W2R: (c), walking the lower mount (no fuse-overlayfs)',
  'us-hydrate': 'W2R (d): mount-backup --hydrate, fresh --cache-dir',
  'A+ovl': 'W2R: A with fuse-overlayfs on top',
  'B+ovl': 'W2R: B with fuse-overlayfs on top',
  'C+ovl': 'W2R: C with fuse-overlayfs on top',
  'C-bare': 'W2R: C without overlay',
};

export interface Sizes {
  label: 'full' | 'quick';
  /** W1: incompressible big files. */
  bigFiles: number;
  bigFileBytes: number;
  /** W1: files of a source tree. */
  smallFiles: number;
  /** W2: files of a node_modules-like tree. */
  projectFiles: number;
  /** W3: random reads of `randomReadBytes` across one big file of W1. */
  randomReads: number;
  randomReadBytes: number;
}

export const FULL: Sizes = {
  label: 'full',
  bigFiles: 4,
  bigFileBytes: 256 * MiB,
  smallFiles: 1500,
  projectFiles: 20_000,
  randomReads: 64,
  randomReadBytes: 4096,
};

export const QUICK: Sizes = {
  label: 'quick',
  bigFiles: 4,
  bigFileBytes: 16 * MiB,
  smallFiles: 300,
  projectFiles: 2_000,
  randomReads: 64,
  randomReadBytes: 4096,
};

/** Peer B's downloader, as the sandbox SDK does it. */
export const DOWNLOAD_CONNECTIONS = 8;
export const DOWNLOAD_PART_BYTES = 16 * MiB;

/** Files read at once by the workload runner (a parallel build or cp -r reads a few at a time). */
export const READ_CONCURRENCY = 4;

export const BUCKET = 'bench';

/** W2R's backup: `<prefix>/<id>/data.sqsh` + meta.json (+ prefetch.json once recorded). */
export const RESTORE_PREFIX = 'backups';
export const RECORD_SECONDS = 120;

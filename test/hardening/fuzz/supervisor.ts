/**
 * The fuzz supervisor: runs cases in a worker process and judges each one. A case fails when the
 * worker reports an oracle violation, when it does not finish within the hard timeout (a hang: the
 * worker is killed and restarted after that case), when the worker dies during it (a crash or an
 * unhandled rejection), or when the worker's memory passes the cap (sampled from /proc while it runs).
 * A failing image is saved (gzipped, with a JSON record naming seed, case and edits).
 * Runs as compiled JavaScript only (it forks worker.js beside itself).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { BaseImage } from './base-images.js';
import { loadBases, makeCase, readImageFile } from './cases.js';
import { DEFAULT_BUDGET, type Budget } from './exercise.js';
import type { WorkerConfig, WorkerMessage } from './protocol.js';

/** Keeps worker.ts in the compiled program: it is forked, never imported. */
export type { WorkerEntry } from './worker.js';

export interface FuzzOptions {
  seed: number;
  /** Wall-clock budget for the mutation run (ignored in images mode: every image is run). */
  seconds: number;
  bases?: BaseImage[];
  /** Regression mode: these stored images, unmutated. */
  images?: string[];
  /** Where failing images are saved; nothing is saved when absent. */
  saveDir?: string;
  /** A case still running after this long is a hang. */
  hardTimeoutMs?: number;
  /** Worker RSS above this is a memory failure. */
  rssCapBytes?: number;
  budget?: Budget;
  /** Stop after this many cases (deterministic CI runs). */
  maxCases?: number;
  onProgress?: (line: string) => void;
}

export interface Failure {
  index: number;
  base: string;
  strategy: string;
  edits: string[];
  kind: 'violation' | 'hang' | 'crash' | 'memory' | 'pristine';
  detail: string;
  saved?: string;
}

export interface FuzzSummary {
  seed: number;
  cases: number;
  seconds: number;
  byStrategy: Record<string, number>;
  byBase: Record<string, number>;
  opened: number;
  openRefused: Record<string, number>;
  walkErrors: Record<string, number>;
  budgetHits: number;
  slowestCaseMs: number;
  peakRssBytes: number;
  peakHeapBytes: number;
  workerRestarts: number;
  failures: Failure[];
}

const DEFAULT_HARD_TIMEOUT_MS = 20_000;
const DEFAULT_RSS_CAP = 768 << 20;
const MEMORY_POLL_MS = 100;

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function add(into: Record<string, number>, key: string, n = 1): void {
  into[key] = (into[key] ?? 0) + n;
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const started = Date.now();
  const hardTimeoutMs = options.hardTimeoutMs ?? DEFAULT_HARD_TIMEOUT_MS;
  const rssCap = options.rssCapBytes ?? DEFAULT_RSS_CAP;
  const budget = options.budget ?? DEFAULT_BUDGET;
  // The clock starts once the first worker has checked the pristine bases.
  let endAt = Infinity;
  const startClock = (): void => {
    if (endAt === Infinity && !options.images) endAt = Date.now() + options.seconds * 1000;
  };
  const total = options.images ? options.images.length : (options.maxCases ?? Infinity);
  const summary: FuzzSummary = {
    seed: options.seed,
    cases: 0,
    seconds: 0,
    byStrategy: {},
    byBase: {},
    opened: 0,
    openRefused: {},
    walkErrors: {},
    budgetHits: 0,
    slowestCaseMs: 0,
    peakRssBytes: 0,
    peakHeapBytes: 0,
    workerRestarts: 0,
    failures: [],
  };
  const loaded = options.bases ? loadBases(options.bases) : [];

  /** Rebuilds case `index` in this process (to save it after a hang or crash). */
  const caseBytes = (index: number): { base: string; strategy: string; edits: string[]; bytes: Buffer } => {
    if (options.images)
      return {
        base: basename(options.images[index]!),
        strategy: 'as-is',
        edits: [],
        bytes: readImageFile(options.images[index]!),
      };
    const c = makeCase(options.seed, index, loaded);
    return c;
  };

  const fail = (f: Omit<Failure, 'saved' | 'base' | 'strategy' | 'edits'> & Partial<Failure>): void => {
    const c = f.base === undefined && f.index >= 0 ? caseBytes(f.index) : undefined;
    const failure: Failure = {
      base: c?.base ?? f.base!,
      strategy: c?.strategy ?? f.strategy!,
      edits: c?.edits ?? f.edits!,
      ...f,
    } as Failure;
    if (options.saveDir && f.index >= 0 && !options.images) {
      const bytes = c?.bytes ?? caseBytes(f.index).bytes;
      mkdirSync(options.saveDir, { recursive: true });
      const stem = join(options.saveDir, `${failure.base}-seed${options.seed}-case${f.index}-${f.kind}`);
      writeFileSync(`${stem}.sqsh.gz`, gzipSync(bytes, { level: 9 }));
      writeFileSync(
        `${stem}.json`,
        JSON.stringify({ seed: options.seed, case: f.index, ...failure, found: new Date().toISOString() }, null, 2) +
          '\n',
      );
      failure.saved = `${stem}.sqsh.gz`;
    }
    summary.failures.push(failure);
    options.onProgress?.(
      `FAIL case ${f.index} (${failure.base}, ${failure.strategy}): ${f.kind}: ${f.detail.slice(0, 500)}`,
    );
  };

  const workerScript = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');
  let next = 0;
  while (next < total && (endAt === Infinity || Date.now() < endAt)) {
    const config: WorkerConfig = {
      bases: options.bases,
      images: options.images,
      seed: options.seed,
      start: next,
      budget,
    };
    const outcome = await runWorker(workerScript, config, {
      hardTimeoutMs,
      rssCap,
      shouldStop: (index) => index >= total || Date.now() >= endAt,
      onReady: (pristine) => {
        startClock();
        for (const p of pristine) {
          const errs = Object.entries(p.result.errors);
          if (!p.result.opened || errs.length > 0 || p.result.violations.length > 0) {
            fail({
              index: -1,
              base: p.base,
              strategy: 'pristine',
              edits: [],
              kind: 'pristine',
              detail: JSON.stringify({ ...p.result }),
            });
          }
        }
      },
      onDone: (m) => {
        summary.cases++;
        next = m.index + 1;
        add(summary.byStrategy, m.strategy);
        add(summary.byBase, m.base);
        if (m.result.opened) summary.opened++;
        else add(summary.openRefused, m.result.openError ?? '?');
        for (const [code, n] of Object.entries(m.result.errors)) add(summary.walkErrors, code, n);
        if (m.result.budgetHit) summary.budgetHits++;
        summary.slowestCaseMs = Math.max(summary.slowestCaseMs, m.ms);
        summary.peakRssBytes = Math.max(summary.peakRssBytes, m.peakRss);
        summary.peakHeapBytes = Math.max(summary.peakHeapBytes, m.peakHeap);
        if (m.result.violations.length > 0) {
          fail({
            index: m.index,
            base: m.base,
            strategy: m.strategy,
            edits: m.edits,
            kind: 'violation',
            detail: m.result.violations.slice(0, 5).join('\n'),
          });
        }
        if (m.peakRss > rssCap)
          fail({
            index: m.index,
            base: m.base,
            strategy: m.strategy,
            edits: m.edits,
            kind: 'memory',
            detail: `worker RSS ${m.peakRss} > cap ${rssCap}`,
          });
        if (summary.cases % 500 === 0)
          options.onProgress?.(`${summary.cases} cases, ${summary.failures.length} failures`);
      },
    });
    if (outcome.kind === 'finished' || outcome.kind === 'stopped') break;
    summary.workerRestarts++;
    if (outcome.index === undefined) {
      fail({ index: -1, base: '(worker start)', strategy: '-', edits: [], kind: 'crash', detail: outcome.detail });
      break;
    }
    summary.cases++;
    fail({ index: outcome.index, kind: outcome.kind, detail: outcome.detail });
    next = outcome.index + 1;
  }
  summary.seconds = Math.round((Date.now() - started) / 100) / 10;
  return summary;
}

type WorkerOutcome =
  | { kind: 'finished' }
  | { kind: 'stopped' }
  | { kind: 'hang' | 'crash' | 'memory'; index?: number; detail: string };

interface WorkerHooks {
  hardTimeoutMs: number;
  rssCap: number;
  shouldStop(nextIndex: number): boolean;
  onReady(pristine: Extract<WorkerMessage, { t: 'ready' }>['pristine']): void;
  onDone(m: Extract<WorkerMessage, { t: 'done' }>): void;
}

function runWorker(script: string, config: WorkerConfig, hooks: WorkerHooks): Promise<WorkerOutcome> {
  return new Promise((resolve) => {
    const child: ChildProcess = fork(script, [JSON.stringify(config)], {
      execArgv: ['--max-old-space-size=1024'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let current: number | undefined;
    let caseStarted = 0;
    let settled = false;
    const finish = (o: WorkerOutcome): void => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      resolve(o);
    };
    const watch = setInterval(() => {
      if (current === undefined || child.pid === undefined) return;
      const rss = rssOf(child.pid);
      if (rss > hooks.rssCap)
        finish({
          kind: 'memory',
          index: current,
          detail: `worker RSS ${rss} bytes > cap ${hooks.rssCap} during the case`,
        });
      else if (Date.now() - caseStarted > hooks.hardTimeoutMs)
        finish({ kind: 'hang', index: current, detail: `no answer after ${hooks.hardTimeoutMs} ms` });
    }, MEMORY_POLL_MS);
    child.on('message', (m: WorkerMessage) => {
      if (m.t === 'ready') hooks.onReady(m.pristine);
      else if (m.t === 'start') {
        if (hooks.shouldStop(m.index)) return finish({ kind: 'stopped' });
        current = m.index;
        caseStarted = Date.now();
      } else if (m.t === 'done') {
        current = undefined;
        hooks.onDone(m);
      }
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      if (current === undefined && code === 0) return finish({ kind: 'finished' });
      finish({
        kind: 'crash',
        index: current,
        detail: `worker exited (${signal ?? `code ${code}`}) during the case: ${stderr.trim().slice(-1500)}`,
      });
    });
  });
}

/**
 * The CI-bounded fuzz run: mutated images (every table, truncations, swapped blocks, absurd values)
 * against the reader in a supervised worker process. Any non-SquashfsError, wrapped internal error,
 * wrong read length, hang past the per-image timeout, crash or memory past the cap fails the test and
 * saves the image under fixtures/regressions/ with its seed and case number.
 * Seed: FUZZ_SEED (default: a new one per day, printed); duration: FUZZ_SECONDS (default 45).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, expect, test } from 'vitest';
import { FIXTURES_OUT, REPO_ROOT, ensureFixtures } from '../helpers/fixtures.js';
import type { FuzzSummary } from './fuzz/supervisor.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';

const execFileP = promisify(execFile);
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 45);
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Date.now() / 86_400_000));

let build: PrivateBuild | undefined;
beforeAll(async () => {
  await ensureFixtures();
  build = await privateBuild();
}, 400_000);

test(
  `mutated images: every call succeeds or fails with a SquashfsError, in bounded time and memory (seed ${SEED})`,
  async () => {
    const args = [
      join(build!.dist, 'bench', 'fuzz.js'),
      '--seconds',
      String(SECONDS),
      '--seed',
      String(SEED),
      '--json',
      '--repo-root',
      REPO_ROOT,
    ];
    const run = await execFileP(process.execPath, args, { timeout: (SECONDS + 120) * 1000, maxBuffer: 64 << 20 }).catch(
      (e: { stdout?: string; stderr?: string; code?: number }) => e,
    );
    const summary = JSON.parse(String(run.stdout).trim().split('\n').pop()!) as FuzzSummary;
    console.log(
      `fuzz seed ${SEED}: ${summary.cases} images in ${summary.seconds} s; opened ${summary.opened}; refused ${JSON.stringify(summary.openRefused)}; ` +
        `walk errors ${JSON.stringify(summary.walkErrors)}; strategies ${JSON.stringify(summary.byStrategy)}; slowest ${summary.slowestCaseMs} ms; ` +
        `peak worker RSS ${(summary.peakRssBytes / 2 ** 20).toFixed(0)} MiB (fixtures in ${FIXTURES_OUT})`,
    );
    expect(
      summary.failures.map(
        (f) => `case ${f.index} ${f.base} ${f.strategy} [${f.edits.join('; ')}] ${f.kind}: ${f.detail} -> ${f.saved}`,
      ),
    ).toEqual([]);
    // The run must have really exercised the reader: many images, a good share opened and walked.
    expect(summary.cases).toBeGreaterThan(SECONDS * 2);
    expect(summary.opened).toBeGreaterThan(summary.cases / 5);
    expect(Object.keys(summary.byStrategy).length).toBeGreaterThanOrEqual(8);
    expect(summary.peakRssBytes).toBeLessThan(768 << 20);
  },
  (SECONDS + 300) * 1000,
);

/**
 * The long fuzzer, on demand: mutated SquashFS images against the reader, deterministic by seed.
 *   npm run build && node dist/bench/fuzz.js --seconds 600 --seed 42
 * Options: --seconds N (default 60), --seed N (default: time-based, printed), --save-dir DIR (default
 * fixtures/regressions), --no-fixtures (only the generated bases), --images DIR (run stored images as
 * they are), --json (summary as JSON on stdout), --timeout-ms N (per-image hang limit), --rss-cap-mb N,
 * --max-cases N. Exit code 1 when any image failed (each one is saved with its seed and case number).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildBaseImages } from '../test/hardening/fuzz/base-images.js';
import { runFuzz } from '../test/hardening/fuzz/supervisor.js';

/** The repository root: dist/bench/fuzz.js or bench/fuzz.ts -> two or one levels up. */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basenameIs(here, 'bench') && basenameIs(dirname(here), 'dist')
    ? resolve(here, '..', '..')
    : resolve(here, '..');
}
function basenameIs(p: string, name: string): boolean {
  return p.split('/').pop() === name;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      seed: { type: 'string' },
      'save-dir': { type: 'string' },
      'no-fixtures': { type: 'boolean', default: false },
      images: { type: 'string' },
      json: { type: 'boolean', default: false },
      'timeout-ms': { type: 'string' },
      'rss-cap-mb': { type: 'string' },
      'max-cases': { type: 'string' },
      'repo-root': { type: 'string' },
    },
  });
  const root = values['repo-root'] ?? repoRoot();
  const seed = values.seed === undefined ? Date.now() % 1_000_000 : Number(values.seed);
  const log = (line: string): void => void process.stderr.write(`fuzz: ${line}\n`);
  const work = mkdtempSync(join(tmpdir(), 'squashfs-fuzz-'));
  try {
    const images = values.images
      ? readdirSync(values.images)
          .filter((f) => /\.sqsh(\.gz)?$/.test(f))
          .sort()
          .map((f) => join(values.images!, f))
      : undefined;
    const bases = images
      ? undefined
      : buildBaseImages(work, values['no-fixtures'] ? undefined : join(root, 'fixtures', 'out'));
    log(
      images
        ? `${images.length} stored images`
        : `seed ${seed}, ${values.seconds} s, bases: ${bases!.map((b) => b.name).join(', ')}`,
    );
    const summary = await runFuzz({
      seed,
      seconds: Number(values.seconds),
      bases,
      images,
      saveDir: images ? undefined : (values['save-dir'] ?? join(root, 'fixtures', 'regressions')),
      hardTimeoutMs: values['timeout-ms'] ? Number(values['timeout-ms']) : undefined,
      rssCapBytes: values['rss-cap-mb'] ? Number(values['rss-cap-mb']) << 20 : undefined,
      maxCases: values['max-cases'] ? Number(values['max-cases']) : undefined,
      onProgress: log,
    });
    if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
    log(
      `${summary.cases} images in ${summary.seconds} s (seed ${seed}): ${summary.opened} opened, refused ${JSON.stringify(summary.openRefused)}, ` +
        `walk errors ${JSON.stringify(summary.walkErrors)}, slowest ${summary.slowestCaseMs} ms, peak RSS ${(summary.peakRssBytes / 2 ** 20).toFixed(0)} MiB, ` +
        `${summary.failures.length} failures`,
    );
    for (const f of summary.failures)
      log(`  case ${f.index} ${f.base} ${f.strategy} ${f.kind}: ${f.detail.slice(0, 300)} ${f.saved ?? ''}`);
    return summary.failures.length === 0 ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`fuzz: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 2;
  },
);

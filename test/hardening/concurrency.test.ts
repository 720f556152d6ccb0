/**
 * 16 concurrent readers (separate processes) at random offsets over every fixture, through our FUSE
 * mount (`squashfs-r2 mount`), each range compared with the kernel's squashfs mount of the same image
 * (unsquashfs extraction for legacy lzma, which the kernel cannot mount). Zero differences allowed.
 */
import { execFile } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ensureFixtures, type Fixture } from '../helpers/fixtures.js';
import { withOracleTree } from '../helpers/kernel-mount.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';
import { startMount } from './mount-process.js';

const execFileP = promisify(execFile);
const READERS = 16;
const READS_PER_READER = Number(process.env.HARDENING_READS ?? 60);
const READER_SCRIPT = join(import.meta.dirname, 'random-reader.mjs');

let work: string;
let build: PrivateBuild;
let fixtures: Fixture[];

beforeAll(async () => {
  fixtures = await ensureFixtures();
  build = await privateBuild();
  work = mkdtempSync(join(tmpdir(), 'hardening-conc-'));
}, 600_000);
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function regularFiles(
  root: string,
  dir = root,
  out: { path: string; size: number }[] = [],
): { path: string; size: number }[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) regularFiles(root, p, out);
    else if (st.isFile()) out.push({ path: relative(root, p), size: st.size });
  }
  return out;
}

interface ReaderResult {
  reads: number;
  bytes: number;
  diffs: string[];
  diffCount: number;
}

test(`${READERS} readers at random offsets over every fixture: zero differences from the kernel's mount`, async () => {
  let reads = 0;
  let bytes = 0;
  const differences: string[] = [];
  for (const fx of fixtures) {
    await withOracleTree(fx, async (ref, kind) => {
      const files = regularFiles(ref);
      const mp = mkdtempSync(join(work, `${fx.name}-`));
      const m = await startMount(build.cli, fx.path, mp, ['--cache-size', '16M']);
      try {
        const config = join(work, `${fx.name}.json`);
        writeFileSync(config, JSON.stringify({ ours: mp, ref, files, reads: READS_PER_READER }));
        const results = await Promise.all(
          Array.from({ length: READERS }, (_, i) =>
            execFileP(process.execPath, [READER_SCRIPT, config, String(1000 + i * 7919 + fx.name.length)], {
              timeout: 300_000,
              maxBuffer: 16 << 20,
            }).then((r) => JSON.parse(r.stdout) as ReaderResult),
          ),
        );
        for (const r of results) {
          reads += r.reads;
          bytes += r.bytes;
          differences.push(...r.diffs.map((d) => `${fx.name} (vs ${kind}): ${d}`));
        }
        expect(m.alive(), `${fx.name}: mount died: ${m.output()}`).toBe(true);
      } finally {
        expect(await m.unmount(), `${fx.name}: ${m.output()}`).toBe(0);
      }
    });
  }
  console.log(
    `${fixtures.length} fixtures, ${READERS} concurrent readers each: ${reads} random reads, ${(bytes / 2 ** 20).toFixed(0)} MiB compared, ${differences.length} differences`,
  );
  expect(differences).toEqual([]);
  expect(reads).toBe(fixtures.length * READERS * READS_PER_READER);
}, 1_800_000);

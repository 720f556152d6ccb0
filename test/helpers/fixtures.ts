/**
 * Test images built by fixtures/build.sh (mksquashfs and tar2sqfs over generated source trees).
 *
 * `ensureFixtures()` runs the script once per process; the script itself is idempotent and holds a
 * flock while it builds, so parallel vitest workers never build twice (the second one waits, then
 * finds everything up to date in a fraction of a second).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES_SCRIPT = join(REPO_ROOT, 'fixtures', 'build.sh');
export const FIXTURES_OUT = join(REPO_ROOT, 'fixtures', 'out');

export type FixtureCompressor = 'gzip' | 'lzma' | 'lzo' | 'xz' | 'lz4' | 'zstd';

export interface Fixture {
  /** Short unique name, e.g. "xz-bcj-x86". */
  name: string;
  /** Absolute path of the image. */
  path: string;
  /** Absolute path of the directory the image was built from. */
  sourceTree: string;
  compressor: FixtureCompressor;
  builder: 'mksquashfs' | 'tar2sqfs';
  /** The writer's extra options, space separated (for messages). */
  options: string;
  /** The kernel can loop-mount it (every compressor but legacy lzma). */
  kernelMountable: boolean;
  /** Contains special/socket (tar2sqfs images do not: tar cannot carry sockets). */
  hasSocket: boolean;
  /** Has an xattr table (false for -no-xattrs). */
  hasXattrs: boolean;
  notes: string;
}

interface IndexRecord extends Omit<Fixture, 'path' | 'sourceTree'> {
  path: string;
  sourceTree: string;
}

let building: Promise<Fixture[]> | undefined;

/** Builds what is missing or stale, then returns every fixture (index.json order). */
export function ensureFixtures(): Promise<Fixture[]> {
  building ??= buildAndLoad().catch((e: unknown) => {
    building = undefined; // let a later call retry
    throw e;
  });
  return building;
}

/** One fixture by name; throws with the list of names when it does not exist. */
export async function fixture(name: string): Promise<Fixture> {
  const all = await ensureFixtures();
  const found = all.find((f) => f.name === name);
  if (!found) throw new Error(`no fixture "${name}"; have: ${all.map((f) => f.name).join(', ')}`);
  return found;
}

async function buildAndLoad(): Promise<Fixture[]> {
  try {
    await execFileP('bash', [FIXTURES_SCRIPT], { maxBuffer: 16 * 1024 * 1024, timeout: 600_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`fixtures/build.sh failed: ${err.stderr?.trim() || err.message}`);
  }
  const records = JSON.parse(await readFile(join(FIXTURES_OUT, 'index.json'), 'utf8')) as IndexRecord[];
  return records.map((r) => ({ ...r, path: join(FIXTURES_OUT, r.path), sourceTree: join(FIXTURES_OUT, r.sourceTree) }));
}

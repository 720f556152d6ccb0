/**
 * bin/cli.cjs, the CLI's node entry: it runs the bundle (dist/cli.bundle.cjs) with V8's code cache, or
 * the tsc output when the bundle is missing or stale. Each test runs a private copy of bin/ and the
 * bundle (dist/src and node_modules linked from the repository), so its cache is its own.
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, ensureFixtures } from '../helpers/fixtures.js';
import { ensureBuilt } from './run-cli.js';

let image: string;
let tree: string;

beforeAll(async () => {
  const [fixtures] = await Promise.all([ensureFixtures(), ensureBuilt()]);
  image = fixtures.find((f) => f.name === 'gzip-4k')!.path;
  expect(existsSync(join(REPO_ROOT, 'dist', 'cli.bundle.cjs')), 'npm run build makes the bundle').toBe(true);
}, 300_000);

beforeEach(() => {
  tree = mkdtempSync(join(tmpdir(), 'sqr2-loader-'));
  mkdirSync(join(tree, 'bin'));
  mkdirSync(join(tree, 'dist'));
  copyFileSync(join(REPO_ROOT, 'bin', 'cli.cjs'), join(tree, 'bin', 'cli.cjs'));
  copyFileSync(join(REPO_ROOT, 'dist', 'cli.bundle.cjs'), join(tree, 'dist', 'cli.bundle.cjs'));
  symlinkSync(join(REPO_ROOT, 'dist', 'src'), join(tree, 'dist', 'src'));
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(tree, 'node_modules'));
});

afterEach(() => rmSync(tree, { recursive: true, force: true }));

const cacheDir = () => join(tree, 'dist', '.code-cache');
const caches = () => (existsSync(cacheDir()) ? readdirSync(cacheDir()).sort() : []);

/** `node <tree>/bin/cli.cjs ls <image> /` with the loader's trace. */
function ls(nodeFlags: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [...nodeFlags, join(tree, 'bin', 'cli.cjs'), 'ls', image, '/'], {
    env: { ...process.env, NODE_OPTIONS: '', ...env, SQUASHFS_R2_LOADER_TRACE: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, trace: r.stderr };
}

/** What `ls` prints when the tsc output's main() runs it, no loader involved. */
function expectedListing(): string {
  const main = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).href;
  const script = `import(${JSON.stringify(main)}).then(async (m) => { process.exitCode = await m.main(process.argv.slice(1)); })`;
  const r = spawnSync(process.execPath, ['-e', script, 'ls', image, '/'], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  return r.stdout;
}

describe('bin/cli.cjs', () => {
  it('runs an ASCII-only bundle (V8 reads and compiles a one-byte string at about half the cost)', () => {
    const bundle = readFileSync(join(REPO_ROOT, 'dist', 'cli.bundle.cjs'), 'utf8');
    expect(bundle.match(/[\u0080-\uffff]/g) ?? []).toEqual([]);
    // The escapes mean what the characters did: the ellipsis of a URL shown without its query.
    expect(bundle).toContain('"?\\u2026"');
    const r = spawnSync(process.execPath, [join(tree, 'bin', 'cli.cjs'), 'ls', 'http://exa mple/x.sqsh?sig=1', '/'], {
      env: { ...process.env, NODE_OPTIONS: '', SQUASHFS_R2_LOADER_TRACE: '1' },
      encoding: 'utf8',
    });
    expect(r.stderr).toContain('running the bundle');
    expect(r.stderr).toContain('not a valid URL: http://exa mple/x.sqsh?\u2026');
  });

  it('runs the bundle, saves a code cache, and the next run uses it', () => {
    const first = ls();
    expect(first.code).toBe(0);
    expect(first.trace).toContain('running the bundle, code cache none');
    expect(first.trace).toMatch(/code cache saved \(\d+ bytes\)/);
    expect(first.stdout).toBe(expectedListing());
    expect(caches()).toHaveLength(1);
    expect(caches()[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{8}-ls\.bin$/);

    const second = ls();
    expect(second.code).toBe(0);
    expect(second.trace).toContain('code cache used');
    expect(second.trace).not.toContain('saved');
    expect(second.stdout).toBe(first.stdout);
  });

  it('does not hand a damaged cache to V8 (it would abort the process) and replaces it', () => {
    expect(ls().code).toBe(0);
    const file = join(cacheDir(), caches()[0]!);
    const bytes = readFileSync(file);
    for (let i = 1000; i < bytes.length; i += 997) bytes[i]! ^= 0x5a; // header intact, payload not
    writeFileSync(file, bytes);

    const damaged = ls();
    expect(damaged.signal).toBeNull();
    expect(damaged.code).toBe(0);
    expect(damaged.trace).toContain('code cache damaged');
    expect(damaged.stdout).toBe(expectedListing());
    expect(ls().trace).toContain('code cache used');

    writeFileSync(file, bytes.subarray(0, 6)); // shorter than the header
    const truncated = ls();
    expect(truncated.code).toBe(0);
    expect(truncated.trace).toContain('code cache damaged');
  });

  it('replaces a cache V8 refuses (one made for other node flags)', () => {
    expect(ls().code).toBe(0);
    const [made] = caches();
    // The name of the cache for --no-lazy, holding the cache made without it.
    const flagged = ls(['--no-lazy']);
    expect(flagged.code).toBe(0);
    const other = caches().find((n) => n !== made)!;
    copyFileSync(join(cacheDir(), made!), join(cacheDir(), other));

    const refused = ls(['--no-lazy']);
    expect(refused.code).toBe(0);
    expect(refused.trace).toContain('code cache rejected');
    expect(refused.stdout).toBe(expectedListing());
    expect(ls(['--no-lazy']).trace).toContain('code cache used');
  });

  it("keeps a cache per NODE_OPTIONS too (its V8 flags count as the command line's)", () => {
    expect(ls().code).toBe(0);
    const withOptions = ls([], { NODE_OPTIONS: '--max-old-space-size=300' });
    expect(withOptions.code).toBe(0);
    expect(withOptions.trace).toContain('code cache none');
    expect(caches()).toHaveLength(2);
    expect(ls([], { NODE_OPTIONS: '--max-old-space-size=300' }).trace).toContain('code cache used');
    expect(ls().trace).toContain('code cache used');
  });

  it('runs the tsc output when the bundle is older than it (tsc ran since the bundle was made)', () => {
    utimesSync(join(tree, 'dist', 'cli.bundle.cjs'), new Date(0), new Date(0));
    const r = ls();
    expect(r.code).toBe(0);
    expect(r.trace).toContain('running dist/src (the bundle is older than it)');
    expect(r.stdout).toBe(expectedListing());
    expect(caches()).toEqual([]);
  });

  it('says the CLI is not built when there is nothing to run', () => {
    rmSync(join(tree, 'dist', 'cli.bundle.cjs'));
    rmSync(join(tree, 'dist', 'src'));
    const r = ls();
    expect(r.code).toBe(1);
    expect(r.trace).toContain('running dist/src (no bundle)');
    expect(r.trace).toContain('squashfs-r2: not built? run "npm ci && npm run build"');
  });

  it('removes the caches of other bundle builds when it saves one', () => {
    mkdirSync(cacheDir());
    writeFileSync(join(cacheDir(), '0badcafe-00000000-ls.bin'), 'old');
    expect(ls().code).toBe(0);
    expect(caches()).toHaveLength(1);
    expect(caches()[0]).not.toContain('0badcafe');
  });

  it('runs all the same where no cache can be written', () => {
    writeFileSync(cacheDir(), 'not a directory');
    const r = ls();
    expect(r.code).toBe(0);
    expect(r.trace).toContain('code cache not saved');
    expect(r.stdout).toBe(expectedListing());
  });
});

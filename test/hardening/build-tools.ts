/**
 * The hardening tests run the fuzzer, the CLI and the mount as separate node processes (so a hang or
 * a crash can be timed, killed and attributed, and the mount's memory measured). They compile what
 * they need into a private tree under .tmp/ that mirrors the repository (dist/ + bin/squashfs-r2),
 * transpile only, so they never depend on whether someone ran `npm run build` since the last change.
 * The tree is keyed by a hash of the sources: test files share it, and a changed source rebuilds.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/fixtures.js';

const execFileP = promisify(execFile);
/** Private builds older than this are removed (1.3 MB each; a test run never lasts this long). */
const STALE_MS = 2 * 3600_000;

export interface PrivateBuild {
  /** Root of the private tree: `<root>/dist/...` and `<root>/bin/squashfs-r2`. */
  root: string;
  dist: string;
  /** The CLI, as bin/squashfs-r2 but running this build. */
  cli: string;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every CLI command and the processes they start (commands are imported by name at run time), and the fuzzer. */
function entries(): string[] {
  return [
    'src/cli/main.ts',
    ...readdirSync(join(REPO_ROOT, 'src/cli/commands'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => `src/cli/commands/${f}`),
    'src/fs/daemon.ts',
    'src/backup/lower-daemon.ts',
    'bench/fuzz.ts',
  ].filter((e) => existsSync(join(REPO_ROOT, e)));
}

let building: Promise<PrivateBuild> | undefined;

/** The private build of the current sources (built once per source state, shared by test files). */
export function privateBuild(): Promise<PrivateBuild> {
  building ??= build();
  return building;
}

async function build(): Promise<PrivateBuild> {
  const tmp = join(REPO_ROOT, '.tmp');
  mkdirSync(tmp, { recursive: true });
  const sources = [
    ...tsFiles(join(REPO_ROOT, 'src')),
    ...tsFiles(join(REPO_ROOT, 'test/hardening/fuzz')),
    join(REPO_ROOT, 'bench/fuzz.ts'),
    join(REPO_ROOT, 'bin/squashfs-r2'),
    join(REPO_ROOT, 'bin/cli.js'),
    join(REPO_ROOT, 'bin/cli.cjs'),
  ].sort();
  const hash = createHash('sha256');
  for (const f of sources) hash.update(relative(REPO_ROOT, f)).update('\0').update(readFileSync(f)).update('\0');
  const root = join(tmp, `hardening-build-${hash.digest('hex').slice(0, 16)}`);
  const done = (): PrivateBuild => ({ root, dist: join(root, 'dist'), cli: join(root, 'bin', 'squashfs-r2') });
  if (existsSync(join(root, 'complete'))) return done();

  for (const old of readdirSync(tmp).filter((n) => n.startsWith('hardening-build-'))) {
    const p = join(tmp, old);
    if (Date.now() - statSync(p).mtimeMs > STALE_MS) rmSync(p, { recursive: true, force: true });
  }
  const work = await mkdtemp(join(tmp, 'hardening-building-'));
  const tsc = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');
  const args = [
    '--outDir',
    join(work, 'dist'),
    '--rootDir',
    REPO_ROOT,
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--target',
    'es2022',
  ];
  args.push(
    '--skipLibCheck',
    '--types',
    'node',
    '--noCheck',
    '--sourceMap',
    ...entries().map((e) => join(REPO_ROOT, e)),
  );
  await execFileP(tsc, args, { cwd: REPO_ROOT, timeout: 300_000 });
  mkdirSync(join(work, 'bin'));
  for (const name of ['squashfs-r2', 'cli.js', 'cli.cjs']) {
    copyFileSync(join(REPO_ROOT, 'bin', name), join(work, 'bin', name));
    chmodSync(join(work, 'bin', name), 0o755);
  }
  // The native helpers (build/Release/fuse_kernel.node, built by npm install), so that the faults
  // meet the reader and mount(2) that mounts use; without them they would all go to the fallbacks.
  if (existsSync(join(REPO_ROOT, 'build'))) symlinkSync(join(REPO_ROOT, 'build'), join(work, 'build'));
  writeFileSync(join(work, 'complete'), '');
  try {
    renameSync(work, root);
  } catch {
    // Another test file built the same sources first: use theirs.
    rmSync(work, { recursive: true, force: true });
  }
  return done();
}

/**
 * The CLI runs from dist/ (the bundle bin/cli.cjs starts, or the tsc output). Tests that run it
 * rebuild first (`npm run build`: tsc, then the bundle) when a CLI, mount or reader source is newer
 * than its output, or the bundle older than the tsc output (bin/cli.cjs would then run dist/src).
 * flock: parallel test files never build at the same time; tsc errors in files unrelated to the CLI
 * do not stop the emit.
 */
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './fixtures.js';

const execFileP = promisify(execFile);

const WATCHED = [
  'src/cli/main',
  ...['ls', 'stat', 'cat', 'extract', 'image-arg', 'mount', 'unmount'].map((n) => `src/cli/commands/${n}`),
  'src/squashfs/image',
  ...['index', 'operations', 'daemon', 'native', 'mountpoint', 'unmount'].map((n) => `src/fs/${n}`),
];

async function mtime(path: string): Promise<number> {
  return (await stat(path).catch(() => undefined))?.mtimeMs ?? 0;
}

async function stale(): Promise<boolean> {
  for (const base of WATCHED) {
    if ((await mtime(join(REPO_ROOT, 'dist', `${base}.js`))) < (await mtime(join(REPO_ROOT, `${base}.ts`)))) return true;
  }
  return (await mtime(join(REPO_ROOT, 'dist', 'cli.bundle.cjs'))) <= (await mtime(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')));
}

let built: Promise<void> | undefined;

export function ensureBuilt(): Promise<void> {
  built ??= (async () => {
    if (!(await stale())) return;
    await execFileP('flock', [join(REPO_ROOT, 'dist', '.build.lock'), 'npm', 'run', '--silent', 'build'], { cwd: REPO_ROOT }).catch(() => undefined);
    if (await stale()) throw new Error('dist/ is stale and "npm run build" did not refresh it');
  })();
  return built;
}

/**
 * Runs the real CLI (`./bin/squashfs-r2`, i.e. the compiled dist/) as a child process. The build is
 * refreshed first (`npm run build`: tsc, then the bundle) when a CLI or reader source is newer than its
 * output, or the bundle older than the tsc output (flock: parallel test files never build at the same
 * time; tsc errors in files unrelated to the CLI do not stop the emit).
 */
import { execFile, spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/fixtures.js';

const execFileP = promisify(execFile);

export const CLI = join(REPO_ROOT, 'bin', 'squashfs-r2');

const WATCHED = ['ls', 'stat', 'cat', 'extract', 'image-arg'].map((n) => `src/cli/commands/${n}`).concat(['src/squashfs/image', 'src/cli/main']);

let built: Promise<void> | undefined;

async function mtime(path: string): Promise<number> {
  return (await stat(path).catch(() => undefined))?.mtimeMs ?? 0;
}

async function stale(): Promise<boolean> {
  for (const base of WATCHED) {
    if ((await mtime(join(REPO_ROOT, 'dist', `${base}.js`))) < (await mtime(join(REPO_ROOT, `${base}.ts`)))) return true;
  }
  // bin/cli.cjs runs the bundle only while it is newer than the tsc output (else dist/src, more slowly).
  return (await mtime(join(REPO_ROOT, 'dist', 'cli.bundle.cjs'))) <= (await mtime(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')));
}

export function ensureBuilt(): Promise<void> {
  built ??= (async () => {
    if (!(await stale())) return;
    await execFileP('flock', [join(REPO_ROOT, 'dist', '.build.lock'), 'npm', 'run', '--silent', 'build'], { cwd: REPO_ROOT }).catch(() => undefined);
    if (await stale()) throw new Error('dist/ is stale and "tsc -p tsconfig.json" did not refresh it');
  })();
  return built;
}

export interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs the CLI to completion, collecting stdout as bytes. */
export async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  await ensureBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(CLI, args, { cwd: REPO_ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}

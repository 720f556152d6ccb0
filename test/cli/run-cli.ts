/**
 * Runs the real CLI (`./bin/squashfs-r2`, i.e. the compiled dist/) as a child process, the build
 * refreshed first when it is stale (../helpers/build.ts).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuilt } from '../helpers/build.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

export { ensureBuilt } from '../helpers/build.js';

export const CLI = join(REPO_ROOT, 'bin', 'squashfs-r2');

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

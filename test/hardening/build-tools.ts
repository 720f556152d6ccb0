/**
 * The hardening tests run the fuzzer and helpers as separate node processes (so a hang or a crash
 * in the reader can be timed, killed and attributed). They compile the entry points they need into a
 * private directory under .tmp/ (transpile only, a few seconds), so they never depend on whether
 * someone ran `npm run build` since the last change to the reader.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/fixtures.js';

const execFileP = promisify(execFile);

/** Compiles `entries` (repo-relative .ts paths) and what they import; returns the output root. */
export async function compileEntries(entries: string[]): Promise<string> {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(REPO_ROOT, '.tmp'), { recursive: true });
  const out = await mkdtemp(join(REPO_ROOT, '.tmp', 'hardening-build-'));
  const tsc = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');
  const args = ['--outDir', out, '--rootDir', REPO_ROOT, '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'];
  args.push('--skipLibCheck', '--types', 'node', '--noCheck', '--sourceMap', ...entries.map((e) => join(REPO_ROOT, e)));
  await execFileP(tsc, args, { cwd: REPO_ROOT, timeout: 180_000 });
  return out;
}

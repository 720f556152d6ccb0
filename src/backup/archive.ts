import { spawn } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupError, BackupInputError, type Compression } from './layout.js';

export interface ArchiveOptions {
  compression: Compression;
  /** mksquashfs wildcard patterns, relative to the source dir (e.g. "node_modules", "*.log", "... *.tmp"). */
  excludes: string[];
  /** Scratch dir for the exclude list (the archive's own dir is fine). */
  scratchDir: string;
  processors?: number;
}

/** The mksquashfs argument list (exported for tests and for the demo's narration). */
export function mksquashfsArgs(dir: string, out: string, o: ArchiveOptions, excludeFile?: string): string[] {
  const args = [dir, out, '-comp', o.compression, '-noappend', '-no-progress', '-quiet'];
  if (o.processors) args.push('-processors', String(o.processors));
  // -ef keeps patterns out of argv parsing (mksquashfs' -e must come last and eats everything after it).
  if (excludeFile) args.push('-wildcards', '-ef', excludeFile);
  return args;
}

/** Archives `dir` into `out` with mksquashfs; returns the archive size. */
export async function createArchive(dir: string, out: string, o: ArchiveOptions): Promise<number> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new BackupInputError(`${dir} is not a directory`);
  let excludeFile: string | undefined;
  if (o.excludes.length) {
    for (const p of o.excludes) {
      if (!p || /[\n\r\0]/.test(p)) throw new BackupInputError(`invalid exclude pattern ${JSON.stringify(p)}`);
    }
    excludeFile = join(o.scratchDir, 'excludes');
    await writeFile(excludeFile, `${o.excludes.join('\n')}\n`, { mode: 0o600 });
  }
  const args = mksquashfsArgs(dir, out, o, excludeFile);
  const stderr = await new Promise<string>((resolve, reject) => {
    const child = spawn('mksquashfs', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 16_384) err += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new BackupError(
          e.code === 'ENOENT'
            ? 'mksquashfs not found: install squashfs-tools (scripts/setup.sh)'
            : `mksquashfs: ${e.message}`,
        ),
      ),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve(err);
      else
        reject(
          new BackupError(
            `mksquashfs failed (${signal ?? `exit ${code}`}): ${err.trim().split('\n').slice(-3).join(' / ')}`,
          ),
        );
    });
  });
  void stderr;
  return (await stat(out)).size;
}

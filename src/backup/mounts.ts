import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Mount-table reading and FUSE unmounting. Only paths this module is given are ever unmounted;
 * callers pass paths they created themselves (a restore's overlay and lower mount).
 */

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

export function readMounts(): MountEntry[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    const fields = left.split(' ');
    const rest = (right ?? '').split(' ');
    out.push({
      mountPoint: unescapeMountPath(fields[4] ?? ''),
      fsType: rest[0] ?? '',
      source: unescapeMountPath(rest[1] ?? ''),
    });
  }
  return out;
}

export function isMountPoint(path: string): boolean {
  return readMounts().some((m) => m.mountPoint === path);
}

export function mountEntry(path: string): MountEntry | undefined {
  // The last entry wins: it is the one stacked on top.
  return readMounts()
    .filter((m) => m.mountPoint === path)
    .pop();
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; stderr: string; missing: boolean }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      const missing = (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
      resolve({ ok: !err, stderr: String(stderr).trim() || (err ? err.message : ''), missing });
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 20,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(stepMs);
  }
}

export interface UnmountResult {
  /** true when the normal unmount was refused (busy) and a lazy detach was used instead. */
  lazy: boolean;
}

/**
 * Unmounts a FUSE mount: `fusermount3 -u` (fusermount as fallback), retried briefly because a
 * just-closed file can keep it busy for a moment, then `-uz` (lazy: detached now, freed when idle).
 */
export async function unmountFuse(path: string, options: { lazyIfBusy?: boolean } = {}): Promise<UnmountResult> {
  if (!isMountPoint(path)) return { lazy: false };
  let tool = 'fusermount3';
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    let r = await run(tool, ['-u', path]);
    if (r.missing && tool === 'fusermount3') {
      tool = 'fusermount';
      r = await run(tool, ['-u', path]);
    }
    if (r.missing) throw new Error('neither fusermount3 nor fusermount found: install fuse3');
    if (r.ok || !isMountPoint(path)) return { lazy: false };
    last = r.stderr;
    await sleep(50 * (attempt + 1));
  }
  if (options.lazyIfBusy === false) throw new Error(`cannot unmount ${path}: ${last}`);
  const r = await run(tool, ['-u', '-z', path]);
  if (!r.ok && isMountPoint(path)) throw new Error(`cannot unmount ${path}: ${last}; lazy unmount: ${r.stderr}`);
  return { lazy: true };
}

/**
 * Shared by the FUSE tests: temp mountpoints, tree walks that record st_ino, a byte source with
 * injected faults and delays (around a real FileSource), and the compiled CLI for process tests.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, lstat, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isMountpoint } from '../../src/fs/mountpoint.js';
import type { ByteSource } from '../../src/squashfs/source.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

export { ensureBuilt } from '../helpers/build.js';

export const execFileP = promisify(execFile);
export const CLI = join(REPO_ROOT, 'bin', 'squashfs-r2');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function tempMountpoint(prefix = 'sqfs-fuse-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Removes a temp mountpoint; if a test left it mounted, unmounts it (lazily) first. */
export async function cleanupMountpoint(dir: string): Promise<void> {
  if (isMountpoint(dir)) await execFileP('fusermount3', ['-u', '-z', dir]).catch(() => undefined);
  await rmdir(dir).catch(() => undefined);
}

/** path ('/', '/a/b') -> st_ino for every entry of a tree. */
export async function inodeNumbers(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const visit = async (abs: string, rel: string): Promise<void> => {
    const st = await lstat(abs);
    out.set(rel, st.ino);
    if (st.isDirectory()) {
      for (const name of await readdir(abs)) await visit(join(abs, name), rel === '/' ? `/${name}` : `${rel}/${name}`);
    }
  };
  await visit(root, '/');
  return out;
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A real source with knobs: fail or delay reads that touch a byte range. */
export class FaultySource implements ByteSource {
  failRange?: [number, number];
  delayMs = 0;
  reads = 0;
  constructor(private readonly inner: ByteSource) {}
  get size(): number {
    return this.inner.size;
  }
  get name(): string {
    return `faulty:${this.inner.name}`;
  }
  /** While set, every read waits for it (reads pile up in flight). */
  gate?: Promise<void>;
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.reads++;
    if (this.gate) await this.gate;
    if (this.delayMs) await sleep(this.delayMs);
    const r = this.failRange;
    if (r && offset < r[1] && offset + length > r[0]) throw new Error(`injected failure reading [${offset}, +${length})`);
    return this.inner.read(offset, length);
  }
  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI's node entry: what bin/squashfs-r2 runs, and a starter of background mounts of its own. */
export const CLI_NODE = join(REPO_ROOT, 'bin', 'cli.js');

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000, entry = CLI): Promise<CliRun> {
  return new Promise((resolve) => {
    const [file, argv] = entry === CLI_NODE ? [process.execPath, [CLI_NODE, ...args]] : [entry, args];
    execFile(file, argv, { env: { ...process.env, ...env }, timeout: timeoutMs }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** pid of the background server serving `mountpoint` (it is titled "squashfs-r2 mount <mountpoint>"). */
export async function serverPid(mountpoint: string): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const { readFile } = await import('node:fs/promises');
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').filter(Boolean);
      // A background server names itself (process title) "squashfs-r2 mount <mountpoint>".
      if (argv[0] === `squashfs-r2 mount ${mountpoint}`) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

export type Range = [path: string, offset: number, length: number];

/** Reads ranges in a child process (see read-at.mjs): "<bytes> <sha256>" or "error <code>" per range. */
export async function readInChild(ranges: Range[]): Promise<string[]> {
  const script = join(REPO_ROOT, 'test', 'fs', 'read-at.mjs');
  const { stdout } = await execFileP(process.execPath, [script, JSON.stringify(ranges)], { maxBuffer: 1 << 24 });
  return stdout.trim().split('\n');
}

/** The same answer as readInChild, computed here (for a tree this process does not serve). */
export async function digestAt(path: string, offset: number, length: number): Promise<string> {
  const { open } = await import('node:fs/promises');
  const { createHash } = await import('node:crypto');
  const fh = await open(path);
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return `${done} ${createHash('sha256').update(buf.subarray(0, done)).digest('hex')}`;
  } finally {
    await fh.close();
  }
}

/** Open file descriptors of all processes on files under `dir` (the kernel's view, from /proc). */
export async function openFilesUnder(dir: string): Promise<number> {
  const { readdir, readlink } = await import('node:fs/promises');
  let count = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (target.startsWith(`${dir}/`)) count++;
    }
  }
  return count;
}

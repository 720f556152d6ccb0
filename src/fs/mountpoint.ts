import { existsSync, readFileSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describeError } from '../util/log.js';
import { MountError } from './mount-error.js';

export { MountError } from './mount-error.js';

export interface MountTableEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

/** Mounts from /proc/self/mountinfo (mount point, fs type and source; octal escapes decoded), in order. */
export function mountTable(): MountTableEntry[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const rows: MountTableEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (fields.length < 5 || dash < 0) continue;
    rows.push({
      mountpoint: unescapeMountinfo(fields[4] as string),
      fstype: fields[dash + 1] ?? '',
      source: unescapeMountinfo(fields[dash + 2] ?? ''),
    });
  }
  return rows;
}

/** The mount at `path` that is visible (the last one stacked there), if any. */
export function mountEntry(path: string): MountTableEntry | undefined {
  const abs = resolve(path);
  return mountTable()
    .filter((m) => m.mountpoint === abs)
    .pop();
}

function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

export function isMountpoint(path: string): boolean {
  const abs = resolve(path);
  return mountTable().some((m) => m.mountpoint === abs);
}

/**
 * Refuses a mountpoint that is missing, not a directory, already a mount, a dead FUSE mount
 * (whose process died without unmounting: stat fails with ENOTCONN), or not empty: mounting there
 * would hide its files, which is allowed only when asked (`nonEmpty`, `--nonempty`).
 */
export async function checkMountpoint(path: string, options: { nonEmpty?: boolean } = {}): Promise<string> {
  const abs = resolve(path);
  try {
    const st = await stat(abs);
    if (!st.isDirectory()) throw new MountError(`mountpoint ${abs} is not a directory`);
  } catch (e) {
    if (e instanceof MountError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MountError(`mountpoint ${abs} does not exist`);
    if (code === 'ENOTCONN') {
      throw new MountError(`mountpoint ${abs} is a dead FUSE mount (its process is gone): run "squashfs-r2 unmount ${abs}" first`);
    }
    throw new MountError(`mountpoint ${abs} cannot be used: ${(e as Error).message}`, { cause: e });
  }
  if (isMountpoint(abs)) throw new MountError(`mountpoint ${abs} is already a mount: unmount it first`);
  if (!options.nonEmpty) {
    const entries = await readdir(abs).catch(() => []);
    if (entries.length > 0) {
      throw new MountError(
        `mountpoint ${abs} is not empty (${entries.length} entries would be hidden): use an empty directory, or --nonempty to mount over it`,
      );
    }
  }
  return abs;
}

/** Linux "new" dev_t encoding: the minor number is what names a FUSE connection. */
function minorOf(dev: number): number {
  return (dev & 0xff) | ((dev >>> 12) & 0xfff00);
}

const FUSECTL = '/sys/fs/fuse/connections';

export interface ConnectionProbe {
  /** /sys/fs/fuse/connections/<n> of this mount, when fusectl is mounted. */
  directory?: string;
  alive(): boolean;
}

/**
 * Answers "is the kernel connection of this mount still alive?". The connection outlives the
 * mount entry after a lazy unmount (open files keep it), so it is what decides when serving may
 * stop. fusectl shows one directory per live connection; without fusectl the mount table decides.
 *
 * The directory is named by the device minor, which the kernel hands to the next FUSE mount as soon
 * as ours is gone: the directory's inode number (never reused by fusectl) tells ours from that one.
 */
export async function connectionProbe(mountpoint: string): Promise<ConnectionProbe> {
  await ensureFusectl();
  const st = await stat(mountpoint);
  const dir = `${FUSECTL}/${minorOf(st.dev)}`;
  const ino = await stat(dir).then(
    (d) => d.ino,
    () => undefined,
  );
  if (ino !== undefined) return { directory: dir, alive: () => inodeOf(dir) === ino };
  return { alive: () => isMountpoint(mountpoint) };
}

/**
 * Proves the mount serves: stat through the kernel must return the image's root inode number.
 * Returns the connection probe; on failure the half-made mount is removed before rejecting.
 */
export async function verifyMounted(target: string, rootIno: number, undo: () => Promise<void>): Promise<ConnectionProbe> {
  try {
    const st = await stat(target);
    if (st.ino !== rootIno)
      throw new MountError(`${target} answers with inode ${st.ino}, not the image root ${rootIno}`);
    return await connectionProbe(target);
  } catch (e) {
    await undo().catch(() => undefined);
    throw e instanceof MountError
      ? e
      : new MountError(`${target} did not come up: ${describeError(e)}`, { cause: e });
  }
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/**
 * Mounts the FUSE control filesystem when it is missing and we may (root), as systemd does at boot
 * on most distributions: without it a lazily unmounted mount would stop serving files still open.
 * Best effort: on failure the mount table decides, as documented above.
 */
async function ensureFusectl(): Promise<void> {
  if (process.getuid?.() !== 0 || !existsSync(FUSECTL)) return;
  if (mountTable().some((m) => m.fstype === 'fusectl')) return;
  // node:child_process loads here, not at a mount server's start (~5 ms before its first GET).
  const { execFile } = await import('node:child_process');
  await new Promise<void>((done) => {
    execFile('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], { timeout: 5_000 }, () => done());
  });
}

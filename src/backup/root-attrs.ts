import { execFile } from 'node:child_process';
import { chmod, chown, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import type { SquashfsReader } from '../squashfs/types.js';
import { quoteForSetfattr } from '../util/setfattr.js';

/**
 * The overlay's root is the upper dir (it exists in both layers and upper is on top), so a fresh
 * upper would show its own mode, owner, time and xattrs instead of the archive root's. mount-backup
 * gives the upper dir the lower root's attributes before fuse-overlayfs mounts it.
 *
 * Node has no xattr calls and probing our own mount for them would cost a process per restore, so
 * the lower mount's process, which holds the image, writes the root's xattrs to a file beside the
 * mount, and only when there are any: the usual backup (no xattr table) pays one failed open().
 */
export const ROOT_XATTRS_FILE = 'root-xattrs.json';

/**
 * Names fuse-overlayfs keeps for itself on its layers (opaque dirs, copy-up origins, stat overrides).
 * Copied onto upper, an archived `trusted.overlay.opaque` would hide the whole lower tree.
 */
const OVERLAY_OWN_PREFIXES = [
  'trusted.overlay.',
  'user.overlay.',
  'user.fuseoverlayfs.',
  'security.fuseoverlayfs.',
  'user.containers.',
];

export function isOverlayOwnXattr(name: string): boolean {
  return OVERLAY_OWN_PREFIXES.some((p) => name.startsWith(p));
}

export interface RootXattr {
  name: string;
  /** base64 */
  value: string;
}

/** The lower process's side: the image root's xattrs to `file`, written only when there are any. */
export async function writeRootXattrs(reader: SquashfsReader, file: string): Promise<void> {
  if (!reader.info.xattrs) return;
  const root = await reader.root();
  const names = await reader.listXattrs(root);
  if (names.length === 0) return;
  const xattrs: RootXattr[] = [];
  for (const name of names) {
    xattrs.push({ name, value: Buffer.from(await reader.getXattr(root, name)).toString('base64') });
  }
  await writeFile(file, JSON.stringify(xattrs), { mode: 0o600 });
}

/** mount-backup's side: what writeRootXattrs left, or none. */
export async function readRootXattrs(file: string): Promise<RootXattr[]> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as RootXattr[];
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

function setXattrs(path: string, xattrs: RootXattr[]): Promise<void> {
  const lines = [`# file: ${quoteForSetfattr(path)}`];
  for (const x of xattrs) {
    const value = Buffer.from(x.value, 'base64');
    lines.push(`${quoteForSetfattr(x.name)}=${value.length ? `0x${value.toString('hex')}` : '""'}`);
  }
  return new Promise((resolve, reject) => {
    const child = execFile('setfattr', ['-h', '--restore=-'], (err, _out, stderr) => {
      if (err) reject(new Error(String(stderr).trim().split('\n').slice(0, 3).join('; ') || err.message));
      else resolve();
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(`${lines.join('\n')}\n\n`);
  });
}

export interface RootCopy {
  /** fuse-overlayfs's own names found on the archive's root: not copied. */
  skipped: string[];
  /** Why the xattrs could not be set (e.g. the state dir's filesystem refuses them); the rest was set. */
  xattrFailure?: string;
  /** `upper`'s ctime once done: a later one means the restored dir's root was changed by a user. */
  upperCtimeMs: number;
}

/**
 * Gives `upper` the attributes of `lowerRoot`: owner first (chown may clear setgid), then xattrs,
 * then the mode, then the times last (every change before would count as one).
 */
export async function copyRootAttributes(lowerRoot: string, upper: string, xattrs: RootXattr[]): Promise<RootCopy> {
  const root = await stat(lowerRoot);
  await chown(upper, root.uid, root.gid);
  const skipped = xattrs.filter((x) => isOverlayOwnXattr(x.name)).map((x) => x.name);
  const wanted = xattrs.filter((x) => !isOverlayOwnXattr(x.name));
  let xattrFailure: string | undefined;
  if (wanted.length) await setXattrs(upper, wanted).catch((e: Error) => (xattrFailure = e.message));
  await chmod(upper, root.mode & 0o7777);
  await utimes(upper, root.atime, root.mtime);
  return { skipped, xattrFailure, upperCtimeMs: (await stat(upper)).ctimeMs };
}

/**
 * Manifests: one normalised record per entry of a tree, so a reader's view can be compared with an
 * oracle's (kernel loop mount, FUSE mount, `unsquashfs -d` extraction, our own `extract`).
 *
 * Normalisation (see shared/docs/oracles.md): entries sorted by path bytewise, mode & 0o7777 with the
 * type kept apart, xattrs as sorted `name=hex`, hard links as "the first path of the group" instead
 * of inode numbers (numbers differ between oracles), directory size kept but compared only on request.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FileType, Inode, SquashfsReader } from '../../src/squashfs/types.js';

const execFileP = promisify(execFile);

export interface ManifestEntry {
  /** '/' for the root, '/a/b' below it. */
  path: string;
  type: FileType;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes for files, target length for symlinks, oracle-specific for directories, 0 otherwise. */
  size: number;
  /** Seconds. */
  mtime: number;
  nlink: number;
  /** "major,minor" for devices. */
  rdev?: string;
  /** Symlink target. */
  target?: string;
  /** Sorted `name=hexvalue`. */
  xattrs: string[];
  /** sha256 of the content (regular files). */
  sha256?: string;
  /** Non-directories with nlink > 1: the bytewise-smallest path of the names sharing the inode. */
  linkGroup?: string;
}

export type Manifest = ManifestEntry[];

export interface ManifestOptions {
  /** Skip content hashing (much faster for listings-only comparisons). */
  hash?: boolean;
}

// S_IFMT values; computed keys keep them octal, as every reference writes them.
const TYPE_OF_MODE: Record<number, FileType> = {
  [0o040000]: 'directory',
  [0o100000]: 'file',
  [0o120000]: 'symlink',
  [0o060000]: 'block-device',
  [0o020000]: 'char-device',
  [0o010000]: 'fifo',
  [0o140000]: 'socket',
};

/** Linux dev_t (glibc encoding; equals the kernel's "new" 32-bit encoding below 2^32) -> "maj,min". */
export function devString(dev: number | bigint): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major},${minor}`;
}

function byPath(a: { path: string }, b: { path: string }): number {
  return Buffer.compare(Buffer.from(a.path), Buffer.from(b.path));
}

/** Fills linkGroup from a path -> inode-identity map, then sorts. */
function finish(entries: ManifestEntry[], identity: Map<string, string>): Manifest {
  const groups = new Map<string, string[]>();
  for (const e of entries) {
    if (e.type === 'directory' || e.nlink <= 1) continue;
    const id = identity.get(e.path)!;
    groups.set(id, [...(groups.get(id) ?? []), e.path]);
  }
  for (const e of entries) {
    if (e.type === 'directory' || e.nlink <= 1) continue;
    const group = groups.get(identity.get(e.path)!)!;
    e.linkGroup = [...group].sort((a, b) => byPath({ path: a }, { path: b }))[0];
  }
  return entries.sort(byPath);
}

/** Runs at most `n` of the functions given to it at once. */
function limiter(n: number): <T>(f: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async (f) => {
    if (running >= n) await new Promise<void>((go) => waiting.push(go));
    running++;
    try {
      return await f();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Undoes getfattr's quoting of file names: `\ooo` octal escapes (it always escapes `\` itself). */
function unquoteGetfattr(s: string): string {
  const raw = Buffer.from(s, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      out.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else {
      out.push(raw[i]!);
    }
  }
  return Buffer.from(out).toString('utf8');
}

/**
 * Every xattr under `dir` in one getfattr run: absolute path -> sorted `name=hex`.
 * -P: never follow symlinks to directories; -h: symlinks' own xattrs.
 */
export async function xattrsOfTree(dir: string): Promise<Map<string, string[]>> {
  const { stdout } = await execFileP(
    'getfattr',
    ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir],
    {
      maxBuffer: 256 * 1024 * 1024,
    },
  ).catch((e: { stdout?: string; stderr?: string }) => {
    // A filesystem without xattr support (squashfs built with no xattr table) fails every path with ENOTSUP: no xattrs.
    const lines = (e.stderr ?? '').split('\n').filter((l) => l !== '');
    if (lines.length > 0 && lines.every((l) => l.endsWith('Operation not supported')))
      return { stdout: e.stdout ?? '' };
    throw e;
  });
  const result = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = [];
      result.set(unquoteGetfattr(line.slice('# file: '.length)), current);
    } else if (line !== '' && current) {
      const eq = line.indexOf('=');
      const name = eq < 0 ? line : line.slice(0, eq);
      const value = eq < 0 ? '' : line.slice(eq + 1).replace(/^0x/, '');
      current.push(`${unquoteGetfattr(name)}=${value}`);
    }
  }
  for (const list of result.values()) list.sort();
  return result;
}

/** The manifest of a real directory tree (kernel mount, FUSE mount, extraction). */
export async function manifestFromTree(dir: string, options: ManifestOptions = {}): Promise<Manifest> {
  const hash = options.hash ?? true;
  const root = dir.replace(/\/+$/, '');
  const xattrs = await xattrsOfTree(root);
  const entries: ManifestEntry[] = [];
  const identity = new Map<string, string>();

  // Entries are read 2 at a time (the manifest is sorted at the end), not one by one: a FUSE mount
  // served by this very process (the library's mount()) needs free libuv threads to answer, and
  // libuv has 4; with 16 at a time the walk held all of them and the mount deadlocked.
  const slots = limiter(2);
  const visit = async (abs: string, rel: string): Promise<void> => {
    const children = await slots(() => describe(abs, rel));
    await Promise.all(children.map((name) => visit(join(abs, name), rel === '/' ? `/${name}` : `${rel}/${name}`)));
  };
  /** Records one entry; returns a directory's child names. */
  const describe = async (abs: string, rel: string): Promise<string[]> => {
    const st = await lstat(abs, { bigint: true });
    const type = TYPE_OF_MODE[Number(st.mode) & 0o170000];
    if (!type) throw new Error(`${abs}: unknown file type ${st.mode}`);
    const entry: ManifestEntry = {
      path: rel,
      type,
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: Number(st.size),
      mtime: Number(st.mtimeMs / 1000n),
      nlink: Number(st.nlink),
      xattrs: xattrs.get(abs) ?? [],
    };
    if (type === 'block-device' || type === 'char-device') entry.rdev = devString(st.rdev);
    if (type === 'symlink') entry.target = await readlink(abs);
    if (type === 'file') entry.sha256 = hash ? await sha256OfFile(abs) : undefined;
    identity.set(rel, `${st.dev}:${st.ino}`);
    entries.push(entry);
    return type === 'directory' ? readdir(abs) : [];
  };
  await visit(root, '/');
  return finish(entries, identity);
}

function devFromKernelEncoding(rdev: number): string {
  // squashfs stores the kernel's "new" 32-bit encoding (what Stat.rdev carries).
  const major = (rdev >>> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  return `${major},${minor}`;
}

/** The manifest of an image as the library sees it, walked through the public reader API. */
export async function manifestFromReader(reader: SquashfsReader, options: ManifestOptions = {}): Promise<Manifest> {
  const hash = options.hash ?? true;
  const entries: ManifestEntry[] = [];
  const identity = new Map<string, string>();
  const visitedDirs = new Set<number>();

  const visit = async (inode: Inode, rel: string): Promise<void> => {
    const st = inode.stat;
    const entry: ManifestEntry = {
      path: rel,
      type: st.type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      mtime: st.mtime,
      nlink: st.nlink,
      xattrs: [],
    };
    for (const name of await reader.listXattrs(inode)) {
      entry.xattrs.push(`${name}=${Buffer.from(await reader.getXattr(inode, name)).toString('hex')}`);
    }
    entry.xattrs.sort();
    if (st.type === 'block-device' || st.type === 'char-device') entry.rdev = devFromKernelEncoding(st.rdev);
    if (st.type === 'symlink') entry.target = await reader.readlink(inode);
    if (st.type === 'file' && hash) entry.sha256 = await sha256OfReader(reader, inode);
    identity.set(rel, `ino:${st.ino}`);
    entries.push(entry);
    if (st.type === 'directory') {
      if (visitedDirs.has(inode.ref)) throw new Error(`directory cycle: ${rel} is a directory seen before`);
      visitedDirs.add(inode.ref);
      const children = [...(await reader.readdir(inode))].sort((a, b) => byPath({ path: a.name }, { path: b.name }));
      for (const child of children) {
        await visit(await reader.inode(child.ref), rel === '/' ? `/${child.name}` : `${rel}/${child.name}`);
      }
    }
  };
  await visit(await reader.root(), '/');
  return finish(entries, identity);
}

async function sha256OfReader(reader: SquashfsReader, inode: Inode): Promise<string> {
  const hash = createHash('sha256');
  const chunk = 1 << 20;
  for (let off = 0; off < inode.stat.size; off += chunk) {
    const want = Math.min(chunk, inode.stat.size - off);
    const bytes = await reader.read(inode, off, want);
    if (bytes.length !== want) throw new Error(`short read at ${off}: ${bytes.length} of ${want}`);
    hash.update(bytes);
  }
  return hash.digest('hex');
}

export type ManifestField = Exclude<keyof ManifestEntry, 'path'>;

export interface DiffOptions {
  /** Fields never compared. */
  ignore?: ManifestField[];
  /** Directory st_size is writer/oracle specific: compared only when true. */
  dirSize?: boolean;
  /** Directory nlink is writer specific (and recomputed by extraction): compared unless false. */
  dirNlink?: boolean;
  /** Entries to leave out on both sides (e.g. sockets that an oracle cannot represent). */
  skip?: (entry: ManifestEntry) => boolean;
}

const FIELDS: ManifestField[] = [
  'type',
  'mode',
  'uid',
  'gid',
  'size',
  'mtime',
  'nlink',
  'rdev',
  'target',
  'xattrs',
  'sha256',
  'linkGroup',
];

function show(field: ManifestField, v: unknown): string {
  if (v === undefined) return '(none)';
  if (field === 'mode' && typeof v === 'number') return `0o${v.toString(8)}`;
  if (Array.isArray(v))
    return `[${v.map((x) => (String(x).length > 80 ? `${String(x).slice(0, 77)}...` : x)).join(', ')}]`;
  return JSON.stringify(v);
}

/** Human-readable differences between two manifests ("a" = expected/oracle, "b" = actual). */
export function diffManifests(a: Manifest, b: Manifest, options: DiffOptions = {}): string[] {
  const skip = options.skip ?? (() => false);
  const ignore = new Set(options.ignore ?? []);
  const mapA = new Map(a.filter((e) => !skip(e)).map((e) => [e.path, e]));
  const mapB = new Map(b.filter((e) => !skip(e)).map((e) => [e.path, e]));
  const out: string[] = [];
  for (const [path, ea] of mapA) {
    const eb = mapB.get(path);
    if (!eb) {
      out.push(`${path}: only in a (${ea.type})`);
      continue;
    }
    for (const field of FIELDS) {
      if (ignore.has(field)) continue;
      if (ea.type === 'directory' && eb.type === 'directory') {
        if (field === 'size' && !options.dirSize) continue;
        if (field === 'nlink' && options.dirNlink === false) continue;
      }
      const va = ea[field];
      const vb = eb[field];
      const same = Array.isArray(va) && Array.isArray(vb) ? va.join('\n') === vb.join('\n') : va === vb;
      if (!same) out.push(`${path}: ${field} a=${show(field, va)} b=${show(field, vb)}`);
    }
  }
  for (const [path, eb] of mapB) if (!mapA.has(path)) out.push(`${path}: only in b (${eb.type})`);
  return out;
}

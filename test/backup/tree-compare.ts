import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A tree as a restore must reproduce it: per entry (root included, as '.') what lstat says at the
 * precision SquashFS keeps (whole-second mtime; no atime/ctime), every xattr, content and link
 * target, and which entries share an inode. Directory sizes differ between filesystems by design
 * and are left out; everything else is compared.
 */
export interface TreeEntry {
  /** st_mode in octal: file type and permission bits including setuid, setgid and sticky. */
  mode: string;
  uid: number;
  gid: number;
  nlink: number;
  mtimeSec: number;
  size?: number;
  rdev?: number;
  sha256?: string;
  target?: string;
  /** name=0xhex, sorted, one per line. */
  xattrs: string;
  /** The other entries of this entry's inode (hard links), sorted; only when nlink > 1. */
  sameInode?: string;
}

export type Tree = Record<string, TreeEntry>;

/** getfattr's \ooo escapes undone (paths and names are printed that way). */
function unquoteGetfattr(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && /^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      bytes.push(Number.parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(...Buffer.from(text[i], 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Every xattr of every entry under root, in every namespace, from one getfattr run. */
function allXattrs(root: string): Map<string, string> {
  const out = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const byPath = new Map<string, string>();
  for (const section of out.split('\n\n')) {
    const [head, ...lines] = section.split('\n').filter((l) => l);
    if (!head?.startsWith('# file: ')) continue;
    byPath.set(unquoteGetfattr(head.slice('# file: '.length)), lines.sort().join('\n'));
  }
  return byPath;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function snapshotTree(root: string): Promise<Tree> {
  const xattrs = allXattrs(root);
  const tree: Tree = {};
  const inodes = new Map<number, string[]>();
  async function walk(rel: string): Promise<void> {
    const abs = rel === '.' ? root : join(root, rel);
    const st = await lstat(abs);
    const e: TreeEntry = {
      mode: st.mode.toString(8),
      uid: st.uid,
      gid: st.gid,
      nlink: st.nlink,
      mtimeSec: Math.floor(st.mtimeMs / 1000),
      xattrs: xattrs.get(abs) ?? '',
    };
    if (st.isFile() || st.isSymbolicLink()) e.size = st.size;
    if (st.isFile()) e.sha256 = await sha256(abs);
    if (st.isSymbolicLink()) e.target = await readlink(abs);
    if (st.isCharacterDevice() || st.isBlockDevice()) e.rdev = st.rdev;
    if (!st.isDirectory() && st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), rel]);
    tree[rel] = e;
    if (st.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) await walk(rel === '.' ? name : `${rel}/${name}`);
    }
  }
  await walk('.');
  for (const group of inodes.values()) for (const p of group) tree[p].sameInode = [...group].sort().join(',');
  return tree;
}

/** Every difference, one line each ("path field: want X, got Y"); empty when the trees are equal. */
export function diffTrees(want: Tree, got: Tree): string[] {
  const out: string[] = [];
  for (const path of Object.keys(want).sort()) {
    const w = want[path];
    const g = got[path];
    if (!g) {
      out.push(`${path}: missing`);
      continue;
    }
    const fields = new Set([...Object.keys(w), ...Object.keys(g)]) as Set<keyof TreeEntry>;
    for (const f of fields) {
      if (w[f] !== g[f]) out.push(`${path} ${f}: want ${JSON.stringify(w[f])}, got ${JSON.stringify(g[f])}`);
    }
  }
  for (const path of Object.keys(got).sort()) if (!want[path]) out.push(`${path}: unexpected`);
  return out;
}

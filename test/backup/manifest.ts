import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface ManifestEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: string;
  uid: number;
  gid: number;
  mtimeSec: number;
  size?: number;
  sha256?: string;
  target?: string;
  xattrs?: string;
  /** Other paths of the same inode (hard links), sorted; only for files with nlink > 1. */
  links?: string;
}

function userXattrs(path: string): string {
  try {
    return execFileSync('getfattr', ['-h', '-d', '-m', '^user\\.', '--absolute-names', path], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .sort()
      .join(';');
  } catch {
    return '';
  }
}

/** Every entry under root with type, mode, owner, mtime, content hash, link target, user xattrs, hard-link group. */
export async function manifest(root: string): Promise<Record<string, ManifestEntry>> {
  const out: Record<string, ManifestEntry> = {};
  const inodes = new Map<number, string[]>();
  async function walk(rel: string): Promise<void> {
    const abs = rel ? join(root, rel) : root;
    const st = await lstat(abs);
    const e: ManifestEntry = {
      type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
      mode: (st.mode & 0o7777).toString(8),
      uid: st.uid,
      gid: st.gid,
      mtimeSec: Math.floor(st.mtimeMs / 1000),
    };
    if (e.type === 'file') {
      e.size = st.size;
      e.sha256 = createHash('sha256')
        .update(await readFile(abs))
        .digest('hex');
      if (st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), rel]);
    }
    if (e.type === 'symlink') e.target = await readlink(abs);
    if (e.type !== 'symlink') e.xattrs = userXattrs(abs);
    out[rel || '.'] = e;
    if (e.type === 'dir') for (const name of (await readdir(abs)).sort()) await walk(rel ? `${rel}/${name}` : name);
  }
  await walk('');
  for (const group of inodes.values()) for (const p of group) out[p].links = [...group].sort().join(',');
  return out;
}

import { S_IFMT_OF, type DirEntry, type Stat, type StatFs } from '../squashfs/types.js';

/** The stat object fuse-native turns into `struct stat` (times in milliseconds). */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export function toFuseStat(stat: Stat): FuseStat {
  const ms = stat.mtime * 1000;
  return {
    mode: stat.mode,
    uid: stat.uid,
    gid: stat.gid,
    size: stat.size,
    dev: 0,
    nlink: stat.nlink,
    ino: stat.ino,
    rdev: stat.rdev,
    blksize: stat.blksize,
    blocks: stat.blocks,
    // squashfs keeps only mtime; the kernel reports it for all three.
    atime: ms,
    mtime: ms,
    ctime: ms,
  };
}

/**
 * What readdir's filler needs per entry. libfuse 2 copies only st_ino (with use_ino) and the type
 * bits into the dirent, so the entry's own fields suffice and no inode is decoded for a listing.
 */
export function direntStat(entry: Pick<DirEntry, 'type' | 'ino'>): Partial<FuseStat> {
  return { mode: S_IFMT_OF[entry.type], ino: entry.ino };
}

/** ST_RDONLY (the kernel derives the reported flags from the mount's own flags anyway). */
const STATFS_FLAGS = 1;

export function toFuseStatfs(fs: StatFs): Record<string, number> {
  return {
    bsize: fs.blockSize,
    frsize: fs.blockSize,
    blocks: fs.blocks,
    bfree: 0,
    bavail: 0,
    files: fs.files,
    ffree: 0,
    favail: 0,
    fsid: 0,
    flag: STATFS_FLAGS,
    namemax: fs.nameMax,
  };
}

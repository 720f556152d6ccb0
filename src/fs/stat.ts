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

const U32 = 0x1_0000_0000;

/**
 * A stat in the form fuse-native's native side copies into `struct stat`: 18 u32 (mode, uid, gid,
 * size lo/hi, dev, nlink, ino, rdev, blksize, blocks lo/hi, atime, mtime, ctime lo/hi in ms), as its
 * getStatArray builds from a stat object, including its nlink of at least 1.
 */
export function encodeFuseStat(stat: FuseStat): Uint32Array {
  const ints = new Uint32Array(18);
  ints[0] = stat.mode;
  ints[1] = stat.uid;
  ints[2] = stat.gid;
  setU64(ints, 3, stat.size);
  ints[5] = stat.dev;
  ints[6] = stat.nlink || 1;
  ints[7] = stat.ino;
  ints[8] = stat.rdev;
  ints[9] = stat.blksize;
  setU64(ints, 10, stat.blocks);
  setU64(ints, 12, stat.atime);
  setU64(ints, 14, stat.mtime);
  setU64(ints, 16, stat.ctime);
  return ints;
}

function setU64(ints: Uint32Array, at: number, value: number): void {
  const low = value % U32;
  ints[at] = low;
  ints[at + 1] = (value - low) / U32;
}

/** Encoded once per inode: a Stat is frozen and the image immutable, and getattr is the commonest request. */
const encoded = new WeakMap<Stat, Uint32Array>();

/** getattr's reply value (see native.ts: our getattr passes it to the addon as is). */
export function fuseStatOf(stat: Stat): Uint32Array {
  let ints = encoded.get(stat);
  if (ints === undefined) {
    ints = encodeFuseStat(toFuseStat(stat));
    encoded.set(stat, ints);
  }
  return ints;
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

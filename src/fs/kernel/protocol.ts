/**
 * The FUSE kernel protocol (include/uapi/linux/fuse.h), the part a read-only filesystem speaks:
 * opcodes, INIT flags, and the byte layout of every request and reply this engine reads or writes.
 * All fields are little-endian (x86-64, aarch64); one place for each layout.
 */

export const FUSE_KERNEL_VERSION = 7;
/** The protocol minor we speak: 7.31 has max_pages (7.28), no-opendir (7.29) and cache-symlinks (7.29). */
export const FUSE_KERNEL_MINOR = 31;
/** The oldest minor we accept: READDIRPLUS (7.21) and no-open (7.23). */
export const FUSE_MIN_MINOR = 23;
export const FUSE_ROOT_ID = 1;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
} as const;

/** Requests that would change the filesystem: answered EROFS. */
export const WRITE_OPCODES: ReadonlySet<number> = new Set([
  Op.SETATTR,
  Op.SYMLINK,
  Op.MKNOD,
  Op.MKDIR,
  Op.UNLINK,
  Op.RMDIR,
  Op.RENAME,
  Op.LINK,
  Op.WRITE,
  Op.SETXATTR,
  Op.REMOVEXATTR,
  Op.CREATE,
  Op.FALLOCATE,
  Op.RENAME2,
  Op.COPY_FILE_RANGE,
  Op.TMPFILE,
]);

/** Names for the stats (byOperation), as libfuse's high-level API names them where it has one. */
export const OP_NAMES: Record<number, string> = {
  [Op.LOOKUP]: 'lookup',
  [Op.FORGET]: 'forget',
  [Op.GETATTR]: 'getattr',
  [Op.READLINK]: 'readlink',
  [Op.OPEN]: 'open',
  [Op.READ]: 'read',
  [Op.STATFS]: 'statfs',
  [Op.RELEASE]: 'release',
  [Op.GETXATTR]: 'getxattr',
  [Op.LISTXATTR]: 'listxattr',
  [Op.FLUSH]: 'flush',
  [Op.INIT]: 'init',
  [Op.OPENDIR]: 'opendir',
  [Op.READDIR]: 'readdir',
  [Op.RELEASEDIR]: 'releasedir',
  [Op.ACCESS]: 'access',
  [Op.INTERRUPT]: 'interrupt',
  [Op.DESTROY]: 'destroy',
  [Op.BATCH_FORGET]: 'batch_forget',
  [Op.READDIRPLUS]: 'readdirplus',
  [Op.LSEEK]: 'lseek',
};

/** INIT flags (fuse_init_in.flags / fuse_init_out.flags). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
} as const;

/** fuse_entry_out / fuse_attr_out / fuse_open_out flags. */
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_CACHE_DIR = 1 << 3;

/** Notification codes, sent as the error field of an out header whose unique is 0. */
export const Notify = { STORE: 4 } as const;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const INIT_OUT_SIZE = 64;
export const OPEN_OUT_SIZE = 16;
export const STATFS_OUT_SIZE = 80;
export const GETXATTR_OUT_SIZE = 8;
export const DIRENT_NAME_OFFSET = 24;
export const NOTIFY_STORE_OUT_SIZE = 24;
/** The kernel refuses reads of /dev/fuse into buffers smaller than this (FUSE_MIN_READ_BUFFER). */
export const MIN_READ_BUFFER = 8192;
/** max_pages ceiling the kernel grants (FUSE_MAX_MAX_PAGES): 1 MiB reads with 4 KiB pages. */
export const MAX_MAX_PAGES = 256;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

/** Decodes the 40-byte header every request starts with. */
export function readInHeader(buf: Buffer): InHeader {
  return {
    len: buf.readUInt32LE(0),
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: readU64(buf, 16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
  };
}

/** u64 as a JS number: node ids and offsets stay below 2^53 (image offsets; our node ids are refs + 2). */
export function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 0x1_0000_0000;
}

export function writeU64(buf: Buffer, at: number, value: number): void {
  const low = value % 0x1_0000_0000;
  buf.writeUInt32LE(low, at);
  buf.writeUInt32LE((value - low) / 0x1_0000_0000, at + 4);
}

/** The out header: total length, a negative errno or 0, and the request's unique id. */
export function writeOutHeader(buf: Buffer, len: number, error: number, unique: bigint): void {
  buf.writeUInt32LE(len, 0);
  buf.writeInt32LE(error, 4);
  buf.writeBigUInt64LE(unique, 8);
}

/** The attributes as the kernel takes them (fuse_attr): what stat(2) shows. */
export interface Attr {
  ino: number;
  size: number;
  blocks: number;
  /** Seconds; squashfs has one time, given as atime, mtime and ctime alike. */
  time: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

export function writeAttr(buf: Buffer, at: number, a: Attr): void {
  writeU64(buf, at, a.ino);
  writeU64(buf, at + 8, a.size);
  writeU64(buf, at + 16, a.blocks);
  writeU64(buf, at + 24, a.time);
  writeU64(buf, at + 32, a.time);
  writeU64(buf, at + 40, a.time);
  buf.writeUInt32LE(0, at + 48); // atimensec
  buf.writeUInt32LE(0, at + 52);
  buf.writeUInt32LE(0, at + 56);
  buf.writeUInt32LE(a.mode, at + 60);
  buf.writeUInt32LE(a.nlink, at + 64);
  buf.writeUInt32LE(a.uid, at + 68);
  buf.writeUInt32LE(a.gid, at + 72);
  buf.writeUInt32LE(a.rdev, at + 76);
  buf.writeUInt32LE(a.blksize, at + 80);
  buf.writeUInt32LE(0, at + 84); // flags
}

/** fuse_entry_out: node id 0 is a negative entry (cached "no such name" for entryValid seconds). */
export function writeEntryOut(
  buf: Buffer,
  at: number,
  nodeid: number,
  validSeconds: number,
  attr: Attr | undefined,
): void {
  writeU64(buf, at, nodeid);
  writeU64(buf, at + 8, 0); // generation: node ids are inode locations, never reused for another inode
  writeU64(buf, at + 16, validSeconds); // entry_valid
  writeU64(buf, at + 24, attr ? validSeconds : 0); // attr_valid
  buf.writeUInt32LE(0, at + 32);
  buf.writeUInt32LE(0, at + 36);
  if (attr) writeAttr(buf, at + 40, attr);
  else buf.fill(0, at + 40, at + ENTRY_OUT_SIZE);
}

/** Bytes a fuse_dirent with this name takes, padded to 8. */
export function direntSize(nameBytes: number): number {
  return (DIRENT_NAME_OFFSET + nameBytes + 7) & ~7;
}

/** fuse_dirent: ino, the cookie of the next entry, the name's length, its DT_ type, the name. */
export function writeDirent(
  buf: Buffer,
  at: number,
  ino: number,
  nextOffset: number,
  type: number,
  name: Buffer,
): number {
  writeU64(buf, at, ino);
  writeU64(buf, at + 8, nextOffset);
  buf.writeUInt32LE(name.length, at + 16);
  buf.writeUInt32LE(type, at + 20);
  name.copy(buf, at + DIRENT_NAME_OFFSET);
  const size = direntSize(name.length);
  buf.fill(0, at + DIRENT_NAME_OFFSET + name.length, at + size);
  return size;
}

/** fuse_read_in (READ, READDIR, READDIRPLUS): the offset and the most bytes the kernel takes. */
export function readReadIn(buf: Buffer): { offset: number; size: number } {
  return { offset: readU64(buf, IN_HEADER_SIZE + 8), size: buf.readUInt32LE(IN_HEADER_SIZE + 16) };
}

/** A NUL-terminated name at `at` (LOOKUP, GETXATTR), as raw bytes. */
export function cString(buf: Buffer, at: number, end: number): Buffer {
  const nul = buf.indexOf(0, at);
  return buf.subarray(at, nul < 0 || nul > end ? end : nul);
}

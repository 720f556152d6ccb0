/**
 * The reader's public vocabulary. The FUSE adapter, the CLI and embedders code against these
 * types; `SquashfsImage` (image.ts) implements `SquashfsReader`.
 *
 * Identity spaces (as squashfuse's ll_inode.c documents them):
 * - inode reference (`InodeRef`): where an inode lives in the inode table, `block_pos * 65536 + offset`
 *   (a JS number; block_pos is checked to keep it below 2^53). This is how the reader finds inodes.
 * - inode number (`ino`): 1..inode_count as stored in the inode; what the kernel reports as st_ino and
 *   what FUSE uses with `use_ino`. Hard links share both.
 */
export type InodeRef = number;

export type FileType = 'directory' | 'file' | 'symlink' | 'block-device' | 'char-device' | 'fifo' | 'socket';

/** POSIX file-type bits (S_IFMT values) for each type. */
export const S_IFMT_OF: Record<FileType, number> = {
  directory: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
  'block-device': 0o060000,
  'char-device': 0o020000,
  fifo: 0o010000,
  socket: 0o140000,
};

/** stat(2) as the kernel's squashfs driver reports it. */
export interface Stat {
  ino: number;
  type: FileType;
  /** Full st_mode: type bits | permission bits (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Files: bytes. Directories: stored listing size + 3 (kernel semantics). Symlinks: target length. */
  size: number;
  nlink: number;
  /** Seconds since the epoch; squashfs stores only mtime, atime and ctime equal it. */
  mtime: number;
  /** Device number in Linux "new" encoding (0 unless a device). */
  rdev: number;
  /** 512-byte units, as the kernel computes them. */
  blocks: number;
  /** Preferred I/O size: the image block size. */
  blksize: number;
}

/** A decoded inode; opaque beyond what Stat says except for the reference. */
export interface Inode {
  readonly ref: InodeRef;
  readonly stat: Stat;
}

export interface DirEntry {
  name: string;
  /** Type from the entry's inode (authoritative), not from the directory record. */
  type: FileType;
  ino: number;
  ref: InodeRef;
}

export interface StatFs {
  blockSize: number;
  /** Blocks in use, in blockSize units (ceil(bytes_used / block_size)). */
  blocks: number;
  files: number;
  nameMax: number;
}

export interface SuperblockInfo {
  compressor: string;
  blockSize: number;
  inodeCount: number;
  bytesUsed: number;
  modTime: number;
  fragmentCount: number;
  idCount: number;
  flags: number;
  exportTable: boolean;
  xattrs: boolean;
}

export interface ReaderOptions {
  /** Bytes of decoded metadata and data blocks kept in memory (default 64 MiB). */
  cacheBytes?: number;
  /**
   * When a file is read sequentially (a read starts where the previous read of it ended), fetch and
   * decode up to this many bytes beyond it in the background (default 1 MiB; 0 disables).
   */
  readaheadBytes?: number;
}

export interface SquashfsReader {
  readonly info: SuperblockInfo;
  root(): Promise<Inode>;
  /** Resolves an absolute or relative path ('/', '', 'a/b'); symlinks are not followed. */
  lookup(path: string): Promise<Inode>;
  /** One step of a lookup; undefined when the name does not exist. ENOTDIR if `dir` is not a directory. */
  lookupChild(dir: Inode, name: string): Promise<Inode | undefined>;
  /**
   * lookupChild without waiting, when the answer is at hand (the directory's listing and the child's
   * inode decoded): the inode, or null when the name is not there. Undefined when it is not at hand,
   * or the lookup fails: then lookupChild answers. Optional so other readers need not provide it.
   */
  lookupChildNow?(dir: Inode, name: string): Inode | null | undefined;
  inode(ref: InodeRef): Promise<Inode>;
  stat(target: Inode | string): Promise<Stat>;
  readdir(dir: Inode | string): Promise<DirEntry[]>;
  readlink(target: Inode | string): Promise<string>;
  listXattrs(target: Inode | string): Promise<string[]>;
  /** ENODATA when absent. */
  getXattr(target: Inode | string, name: string): Promise<Uint8Array>;
  /** Reads up to `length` bytes at `offset` (short only at end of file). EISDIR for directories. */
  read(file: Inode | string, offset: number, length: number): Promise<Uint8Array>;
  /**
   * Like read, but fills `target` (e.g. the buffer FUSE hands in) and returns the byte count, short
   * only at end of file: no intermediate buffer. Optional so other readers need not provide it.
   */
  readInto?(file: Inode | string, offset: number, target: Uint8Array): Promise<number>;
  createReadStream(file: Inode | string, options?: { start?: number; end?: number }): NodeJS.ReadableStream;
  statfs(): StatFs;
  close(): Promise<void>;
}

/** Public API of the SquashFS reader. */
export { SquashfsImage, type CacheStats } from './image.js';
export { SquashfsError, isSquashfsError, type SquashfsErrorCode, type SquashfsErrorDetails } from './errors.js';
export type { ByteSource, ReadOptions } from './source.js';
export type { Superblock } from './superblock.js';
export type { SquashfsInode, FileLayout, DirectoryLayout } from './inode.js';
export { S_IFMT_OF } from './types.js';
export type {
  DirEntry,
  FileType,
  Inode,
  InodeRef,
  ReaderOptions,
  SquashfsReader,
  Stat,
  StatFs,
  SuperblockInfo,
} from './types.js';

import { SquashfsError, corrupt } from './errors.js';
import { isNone64, u16, u32, u64 } from './bytes.js';
import { COMPRESSOR_NAMES } from './compression/decompressor.js';

/** On-disk constants of SquashFS 4.0 (squashfs_fs.h). */
export const SUPERBLOCK_SIZE = 96;
export const SQUASHFS_MAGIC = 0x73717368;
export const METADATA_BLOCK_SIZE = 8192;
export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 1 << 20;
export const FLAG_COMPRESSOR_OPTIONS = 0x0400;
export const FLAG_EXPORT_TABLE = 0x0080;
export const NONE32 = 0xffffffff;

/**
 * Superblock (96 bytes at offset 0):
 *  0 u32 magic | 4 u32 inode_count | 8 u32 mod_time | 12 u32 block_size | 16 u32 fragment_count
 * 20 u16 compressor | 22 u16 block_log | 24 u16 flags | 26 u16 id_count | 28 u16 major | 30 u16 minor
 * 32 u64 root_inode_ref | 40 u64 bytes_used | 48 u64 id_table | 56 u64 xattr_id_table
 * 64 u64 inode_table | 72 u64 directory_table | 80 u64 fragment_table | 88 u64 export_table
 * Absent tables are NONE64, kept here as `undefined`.
 */
export interface Superblock {
  inodeCount: number;
  modTime: number;
  blockSize: number;
  blockLog: number;
  fragmentCount: number;
  compressorId: number;
  flags: number;
  idCount: number;
  rootInodeRef: number;
  bytesUsed: number;
  idTableStart: number;
  xattrIdTableStart: number | undefined;
  inodeTableStart: number;
  directoryTableStart: number;
  /** undefined when there are no fragments (NONE64 or fragment_count 0: the kernel ignores it then). */
  fragmentTableStart: number | undefined;
  exportTableStart: number | undefined;
}

const SB = 'superblock';

/** Decodes and validates the superblock against the image size (as the kernel does at mount, plus a little). */
export function parseSuperblock(b: Uint8Array, imageSize: number): Superblock {
  if (b.length < SUPERBLOCK_SIZE) {
    throw corrupt(SB, `image is ${b.length} bytes, smaller than a superblock (${SUPERBLOCK_SIZE})`);
  }
  if (u32(b, 0) !== SQUASHFS_MAGIC) throw corrupt(SB, 'bad magic: not a SquashFS image');
  const major = u16(b, 28);
  const minor = u16(b, 30);
  if (major !== 4 || minor !== 0) {
    throw new SquashfsError('EUNSUPPORTED', `unsupported SquashFS version ${major}.${minor} (only 4.0)`, { structure: SB });
  }
  const compressorId = u16(b, 20);
  if (!(compressorId in COMPRESSOR_NAMES)) {
    throw new SquashfsError('EUNSUPPORTED', `unknown compressor id ${compressorId}`, { structure: SB });
  }
  const blockSize = u32(b, 12);
  const blockLog = u16(b, 22);
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw corrupt(SB, `block size ${blockSize} is not a power of two between 4 KiB and 1 MiB`);
  }
  if (blockLog > 20 || 1 << blockLog !== blockSize) {
    throw corrupt(SB, `block_log ${blockLog} does not match block size ${blockSize}`);
  }
  const inodeCount = u32(b, 4);
  if (inodeCount === 0) throw corrupt(SB, 'inode count is 0');
  const idCount = u16(b, 26);
  if (idCount === 0) throw corrupt(SB, 'id count is 0');
  const bytesUsed = u64(b, 40);
  if (bytesUsed < SUPERBLOCK_SIZE) throw corrupt(SB, `bytes_used ${bytesUsed} is smaller than the superblock`);
  if (bytesUsed > imageSize) throw corrupt(SB, `bytes_used ${bytesUsed} beyond the image size ${imageSize} (truncated image?)`);

  const table = (off: number, name: string): number => {
    const v = u64(b, off);
    if (v >= bytesUsed) throw corrupt(SB, `${name} start beyond bytes_used (${v} >= ${bytesUsed})`);
    if (v < SUPERBLOCK_SIZE) throw corrupt(SB, `${name} start ${v} inside the superblock`);
    return v;
  };
  const optionalTable = (off: number, name: string): number | undefined => (isNone64(b, off) ? undefined : table(off, name));

  const inodeTableStart = table(64, 'inode table');
  const directoryTableStart = table(72, 'directory table');
  const idTableStart = table(48, 'id table');
  const fragmentCount = u32(b, 16);
  const fragmentField = optionalTable(80, 'fragment table');
  const fragmentTableStart = fragmentCount === 0 ? undefined : fragmentField;
  if (fragmentCount > 0 && fragmentTableStart === undefined) {
    throw corrupt(SB, `fragment count ${fragmentCount} but no fragment table`);
  }
  const exportTableStart = optionalTable(88, 'export table');
  const xattrIdTableStart = optionalTable(56, 'xattr id table');

  // Table order as mksquashfs writes it and the kernel requires: inode < directory <= fragment <= export <= id <= xattr.
  if (inodeTableStart >= directoryTableStart) {
    throw corrupt(SB, `inode table start ${inodeTableStart} not before directory table start ${directoryTableStart}`);
  }
  const order: [string, number | undefined][] = [
    ['directory table', directoryTableStart],
    ['fragment table', fragmentTableStart],
    ['export table', exportTableStart],
    ['id table', idTableStart],
    ['xattr id table', xattrIdTableStart],
  ];
  let prev: [string, number] = ['directory table', directoryTableStart];
  for (const [name, start] of order.slice(1)) {
    if (start === undefined) continue;
    if (start <= prev[1]) throw corrupt(SB, `${name} start ${start} not after ${prev[0]} start ${prev[1]}`);
    prev = [name, start];
  }

  const rootInodeRef = u64(b, 32);
  const rootBlock = Math.floor(rootInodeRef / 65536);
  const rootOffset = rootInodeRef % 65536;
  if (rootOffset >= METADATA_BLOCK_SIZE || rootBlock >= directoryTableStart - inodeTableStart) {
    throw corrupt(SB, `root inode reference ${rootInodeRef} outside the inode table`);
  }

  return {
    inodeCount,
    modTime: u32(b, 8),
    blockSize,
    blockLog,
    fragmentCount,
    compressorId,
    flags: u16(b, 24),
    idCount,
    rootInodeRef,
    bytesUsed,
    idTableStart,
    xattrIdTableStart,
    inodeTableStart,
    directoryTableStart,
    fragmentTableStart,
    exportTableStart,
  };
}

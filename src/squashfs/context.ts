import type { Superblock } from './superblock.js';
import type { ImageIO } from './io.js';
import type { MetadataReader, Region } from './metadata.js';
import type { LookupTable } from './lookup-table.js';
import type { Decompressor } from './compression/index.js';
import type { XattrTable } from './xattr.js';

/** What the decoders of one open image share (built once by image.ts). */
export interface ImageContext {
  readonly sb: Superblock;
  readonly io: ImageIO;
  readonly meta: MetadataReader;
  readonly decompressor: Decompressor;
  /** [inode_table_start, directory_table_start) */
  readonly inodeRegion: Region;
  /** [directory_table_start, first block of the next table) */
  readonly directoryRegion: Region;
  readonly ids: LookupTable;
  readonly fragments: LookupTable | undefined;
  readonly exports: LookupTable | undefined;
  readonly xattrs: XattrTable | undefined;
  /** uid/gid value for an id-table index (cached). */
  id(index: number): Promise<number>;
  /** The same once it has been read, else undefined. */
  idNow(index: number): number | undefined;
}

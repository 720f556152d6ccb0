import { corrupt } from './errors.js';
import { u16, u32, u64 } from './bytes.js';
import type { ImageIO } from './io.js';
import { LookupTable } from './lookup-table.js';
import { MetadataCursor, type MetadataReader, type Region } from './metadata.js';

/** Prefix ids of xattr keys (`type & 0xFF`); the kernel skips any other. */
const PREFIXES = ['user.', 'trusted.', 'security.'] as const;
const VALUE_OUT_OF_LINE = 0x100;
/** Linux limits: XATTR_NAME_MAX and XATTR_SIZE_MAX. */
const MAX_NAME = 255;
const MAX_VALUE = 65536;
/** Bounds for one inode's attributes: Linux lists at most 64 KiB of names (XATTR_LIST_MAX). */
const MAX_PAIRS = 65536;
const MAX_TOTAL_VALUE_BYTES = 16 << 20;
const ID_ENTRY_SIZE = 16;
const HEADER_SIZE = 16;

export interface XattrIdEntry {
  /** Reference (relative to kv_start) of the first key. */
  ref: number;
  count: number;
  /** Writer-defined total, used for st_blocks. */
  size: number;
}

export interface Xattr {
  name: string;
  value: Uint8Array;
}

/**
 * The xattr id table: a 16-byte header `u64 kv_start, u32 count, u32 unused` at xattr_id_table_start,
 * then the u64 block list of 16-byte entries `u64 ref, u32 count, u32 size`. Key/value records live
 * in the metadata stream starting at kv_start:
 *   key `u16 type, u16 name_size, name`; value `u32 size, bytes` (out of line: size 8, u64 ref to `u32 size, bytes`).
 */
export class XattrTable {
  private constructor(
    private readonly reader: MetadataReader,
    private readonly ids: LookupTable,
    private readonly kv: Region,
  ) {}

  static async open(io: ImageIO, reader: MetadataReader, tableStart: number, bytesUsed: number, floor: number): Promise<XattrTable> {
    const S = 'xattr id table';
    if (tableStart + HEADER_SIZE > bytesUsed) throw corrupt(S, 'header runs past bytes_used', tableStart);
    const h = await io.read(tableStart, HEADER_SIZE, S);
    const kvStart = u64(h, 0);
    const count = u32(h, 8);
    if (count === 0) throw corrupt(S, 'xattr id count is 0', tableStart);
    if (kvStart < floor || kvStart >= tableStart) throw corrupt(S, `key/value start ${kvStart} outside [${floor}, ${tableStart})`, tableStart);
    const ids = await LookupTable.open(S, io, reader, {
      listStart: tableStart + HEADER_SIZE,
      listEnd: bytesUsed,
      count,
      entrySize: ID_ENTRY_SIZE,
      blocksFloor: kvStart,
      blocksEnd: tableStart,
    });
    if (kvStart >= ids.firstBlock) throw corrupt(S, `key/value start ${kvStart} not before the id blocks`, tableStart);
    return new XattrTable(reader, ids, { name: 'xattr key/value table', start: kvStart, end: ids.firstBlock });
  }

  /** Start of the key/value blocks: the end of the previous table. */
  get start(): number {
    return this.kv.start;
  }

  get count(): number {
    return this.ids.count;
  }

  async entry(index: number): Promise<XattrIdEntry> {
    const b = await this.ids.entry(index);
    return { ref: u64(b, 0), count: u32(b, 8), size: u32(b, 12) };
  }

  /** All attributes of an inode, in stored order, with full prefixed names. */
  async read(index: number): Promise<Xattr[]> {
    const e = await this.entry(index);
    const S = 'xattr';
    // Each pair takes at least 8 bytes (4 key header + 4 value size); a count beyond what the table can hold is corrupt.
    if (e.count > MAX_PAIRS || e.count * 8 > Math.ceil((this.kv.end - this.kv.start) / 3) * 8192) {
      throw corrupt(S, `xattr count ${e.count} larger than the table allows`);
    }
    let valueBytes = 0;
    let nameBytes = 0;
    const cur = this.cursor(e.ref);
    const out: Xattr[] = [];
    for (let i = 0; i < e.count; i++) {
      const kh = await cur.read(4);
      const type = u16(kh, 0);
      const nameSize = u16(kh, 2);
      if (nameSize > MAX_NAME) throw corrupt(S, `xattr name of ${nameSize} bytes`);
      const name = await cur.read(nameSize);
      const prefix = (type & ~VALUE_OUT_OF_LINE) < PREFIXES.length ? PREFIXES[type & ~VALUE_OUT_OF_LINE] : undefined;
      const fullName = prefix === undefined ? '' : prefix + Buffer.from(name).toString('utf8');
      const valueSize = u32(await cur.read(4), 0);
      if (type & VALUE_OUT_OF_LINE) {
        if (valueSize !== 8) throw corrupt(S, `out-of-line xattr value reference of ${valueSize} bytes (not 8)`);
        const ref = u64(await cur.read(8), 0);
        if (prefix === undefined) continue;
        const value = await this.readValue(this.cursor(ref));
        valueBytes += value.length;
        nameBytes += fullName.length + 1;
        if (valueBytes > MAX_TOTAL_VALUE_BYTES || nameBytes > MAX_VALUE) throw corrupt(S, 'attributes of one inode exceed 64 KiB of names or 16 MiB of values');
        out.push({ name: fullName, value });
      } else {
        if (valueSize > MAX_VALUE) throw corrupt(S, `xattr value of ${valueSize} bytes`);
        const value = await cur.read(valueSize);
        if (prefix === undefined) continue;
        valueBytes += value.length;
        nameBytes += fullName.length + 1;
        if (valueBytes > MAX_TOTAL_VALUE_BYTES || nameBytes > MAX_VALUE) throw corrupt(S, 'attributes of one inode exceed 64 KiB of names or 16 MiB of values');
        out.push({ name: fullName, value: value.slice() });
      }
    }
    return out;
  }

  private cursor(ref: number): MetadataCursor {
    if (!Number.isSafeInteger(ref)) throw corrupt('xattr', `bad reference ${ref}`);
    return MetadataCursor.at(this.reader, this.kv, Math.floor(ref / 65536), ref % 65536);
  }

  private async readValue(cur: MetadataCursor): Promise<Uint8Array> {
    const size = u32(await cur.read(4), 0);
    if (size > MAX_VALUE) throw corrupt('xattr', `out-of-line xattr value of ${size} bytes`);
    return (await cur.read(size)).slice();
  }
}

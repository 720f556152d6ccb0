import { BlockCache } from './block-cache.js';
import type { ImageContext } from './context.js';
import { visitEntries } from './directory.js';
import type { DirectoryLayout } from './inode.js';

/** A directory entry as a parsed listing keeps it. */
export interface ListedEntry {
  /** The name's bytes as a string of one char per byte (latin1): exact for any bytes, compact for ASCII. */
  readonly key: string;
  readonly ref: number;
  readonly ino: number;
}

export interface Listing {
  /** Stored order (readdir). */
  readonly entries: readonly ListedEntry[];
  /** By name key; the first of duplicate names, as a scan finds it (a sound image has none). */
  readonly byName: ReadonlyMap<string, ListedEntry>;
  /** Estimated heap bytes, for the cache bound. */
  readonly bytes: number;
}

/** Rough heap bytes per kept entry (its object, Map and array slots, string header) besides the name. */
const ENTRY_OVERHEAD = 112;

/** The key of a name: its bytes one char each, so names that are not UTF-8 stay distinct. */
export function nameKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
}

/** The key of a name given as a string (its UTF-8 bytes); an ASCII name is its own key. */
export function nameKeyOf(name: string): string {
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) > 0x7f) return nameKey(Buffer.from(name, 'utf8'));
  }
  return name;
}

/** The name's bytes back from its key. */
export function keyBytes(key: string): Buffer {
  return Buffer.from(key, 'latin1');
}

/**
 * Directory listings parsed once and kept, bounded by estimated bytes. FUSE looks up each name of a
 * directory it has just listed; scanning per lookup decodes the listing from its start every time
 * (quadratic in the directory's size). The image is immutable, so a parsed listing never goes stale.
 */
export class ListingCache {
  private readonly cache: BlockCache<Listing>;

  constructor(
    private readonly ctx: ImageContext,
    maxBytes: number,
  ) {
    this.cache = new BlockCache<Listing>(maxBytes, (l) => l.bytes);
  }

  /** The listing of the directory inode at `ref` (parsed now unless kept; concurrent calls share one parse). */
  get(ref: number, dir: DirectoryLayout): Promise<Listing> {
    return this.cache.load(ref, () => parseListing(this.ctx, dir));
  }

  /** The listing when it is kept, without parsing. */
  peek(ref: number): Listing | undefined {
    return this.cache.get(ref);
  }

  clear(): void {
    this.cache.clear();
  }
}

async function parseListing(ctx: ImageContext, dir: DirectoryLayout): Promise<Listing> {
  const entries: ListedEntry[] = [];
  const byName = new Map<string, ListedEntry>();
  let bytes = ENTRY_OVERHEAD;
  await visitEntries(ctx, dir, (e) => {
    const entry: ListedEntry = { key: nameKey(e.name), ref: e.ref, ino: e.ino };
    entries.push(entry);
    if (!byName.has(entry.key)) byName.set(entry.key, entry);
    bytes += ENTRY_OVERHEAD + entry.key.length;
  });
  return { entries, byName, bytes };
}

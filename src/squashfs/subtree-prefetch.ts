import { entryLru } from '../util/entry-lru.js';
import { u32, u64 } from './bytes.js';
import type { ImageContext } from './context.js';
import { WORD_LENGTH_MASK } from './data.js';
import type { SquashfsInode } from './inode.js';
import type { InodeRef } from './types.js';

/**
 * A directory listing as a hint that the files below it are about to be read (find -exec cat, cp -r,
 * tar, grep -r). mksquashfs writes a tree's file data depth first, data blocks and fragment blocks in
 * the order it meets the files, so one subtree's data is one span of the image: when a listed
 * directory's subtree holds at most `maxBytes` of data, the whole span is fetched ahead at readahead
 * priority, in parallel GETs, instead of being found by the sequential detector a few round trips at a
 * time. Larger subtrees are left to the detector (their subdirectories, once listed, may qualify).
 *
 * The image's root is no hint: it is listed at mount by fuse-overlayfs and by anything that looks at
 * the mount, and its subtree is the whole image; its subdirectories are hinted when listed.
 *
 * The walk reads only metadata (inodes, listings, the fragment table: pinned at open for a remote
 * image) and visits at most `maxEntries` entries; a directory inside a subtree already walked is not
 * walked again. Nothing here can fail a listing: a hint that cannot be made is dropped.
 */

export interface SubtreePrefetchOptions {
  /** Largest subtree span fetched ahead. */
  maxBytes: number;
  /** Entries a walk may visit before giving up on the subtree. */
  maxEntries: number;
}

export interface Span {
  start: number;
  end: number;
}

/** What the walk needs of the image: the inode references a directory lists, and their inodes. */
export interface SubtreeTree {
  entries(dir: SquashfsInode): Promise<readonly InodeRef[]>;
  inode(ref: InodeRef): Promise<SquashfsInode>;
}

export const SUBTREE_PREFETCH_DEFAULTS: SubtreePrefetchOptions = { maxBytes: 16 << 20, maxEntries: 4096 };

/** Directories remembered as walked (their subtree hinted, or found too large). */
const WALKED_DIRECTORIES = 16_384;

export class SubtreePrefetch {
  /** Spans asked for; tests and stats read it. */
  hinted = 0;
  private readonly walked = entryLru<InodeRef, true>(WALKED_DIRECTORIES);
  /** Per hinted directory (and the directories inside it): whether its span has arrived. */
  private readonly arrivals = entryLru<InodeRef, Promise<boolean>>(WALKED_DIRECTORIES);

  constructor(
    private readonly ctx: ImageContext,
    private readonly tree: SubtreeTree,
    private readonly prefetch: (offset: number, length: number) => Promise<boolean>,
    private readonly options: SubtreePrefetchOptions = SUBTREE_PREFETCH_DEFAULTS,
  ) {}

  /** `dir` was listed: hint its subtree's span, in the background. */
  listed(dir: SquashfsInode): void {
    if (dir.ref === this.ctx.sb.rootInodeRef || this.walked.has(dir.ref)) return;
    this.walked.set(dir.ref, true);
    const arrived = this.walk(dir).then(
      (walked) => {
        if (!walked) return false;
        this.hinted++;
        const fetched = this.prefetch(walked.span.start, walked.span.end - walked.span.start).catch(() => false);
        for (const ref of walked.inner) this.arrivals.set(ref, fetched);
        return fetched;
      },
      () => false, // a corrupt inode is reported by the read that needs it
    );
    this.arrivals.set(dir.ref, arrived);
  }

  /**
   * Whether the data of a listed directory's subtree is here: a promise of true once its hinted span
   * has arrived, false when it was not hinted (too large) or did not arrive; undefined when the
   * directory was not listed (or is the root, which is never hinted).
   */
  arrival(dir: SquashfsInode): Promise<boolean> | undefined {
    return this.arrivals.get(dir.ref);
  }

  async spanOf(dir: SquashfsInode): Promise<Span | undefined> {
    return (await this.walk(dir))?.span;
  }

  /**
   * The data span of `dir`'s subtree, or undefined when it is empty or over the limits. Walked a
   * directory level at a time: a level's inodes asked for together and the fragment blocks once each
   * at the end, so one await per directory, not two per entry (a 1,500-file tree took 10-60 ms entry
   * by entry, longer than the round trip its GETs then wait for).
   */
  private async walk(dir: SquashfsInode): Promise<{ span: Span; inner: InodeRef[] } | undefined> {
    const { maxBytes, maxEntries } = this.options;
    const bs = this.ctx.sb.blockSize;
    let start = Infinity;
    let end = 0;
    let visited = 0;
    const inner: InodeRef[] = [];
    const fragments = new Set<number>();
    let level: SquashfsInode[] = [dir];
    while (level.length > 0) {
      // Listings one directory at a time, so that the walk stops at maxEntries as it reads them.
      const refs: InodeRef[] = [];
      for (const d of level) {
        refs.push(...(await this.tree.entries(d)));
        if (visited + refs.length > maxEntries) return undefined;
      }
      visited += refs.length;
      const next: SquashfsInode[] = [];
      for (const inode of await Promise.all(refs.map((ref) => this.tree.inode(ref)))) {
        if (inode.dir) {
          inner.push(inode.ref);
          next.push(inode);
          continue;
        }
        const f = inode.file;
        if (!f) continue;
        if (f.blockCount > 0) {
          // Stored blocks are at most a block each: an upper bound without reading the block list.
          start = Math.min(start, f.blocksStart);
          end = Math.max(end, f.blocksStart + f.blockCount * bs);
        }
        if (f.fragmentIndex !== undefined) fragments.add(f.fragmentIndex);
      }
      if (end - start > maxBytes) return undefined;
      level = next;
    }
    // Files packed together share a fragment block: ~1,500 files of a source tree sit in ~100.
    for (const block of await Promise.all([...fragments].map((i) => this.fragmentBlock(i)))) {
      start = Math.min(start, block.start);
      end = Math.max(end, block.end);
    }
    if (end - start > maxBytes) return undefined;
    // Its subdirectories' spans lie inside this one: no walk of their own.
    for (const ref of inner) this.walked.set(ref, true);
    if (end <= start) return undefined;
    return { span: { start, end: Math.min(end, this.ctx.sb.bytesUsed) }, inner };
  }

  private async fragmentBlock(index: number): Promise<Span> {
    const entry = await this.ctx.fragments!.entry(index);
    const start = u64(entry, 0);
    return { start, end: start + (u32(entry, 8) & WORD_LENGTH_MASK) };
  }
}

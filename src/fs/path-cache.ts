import { SquashfsError } from '../squashfs/errors.js';
import type { Inode, SquashfsReader } from '../squashfs/types.js';

/**
 * fuse-native's high-level API names every file by path. Resolving each path from the root would
 * decode one directory per component on every call; instead resolved paths are kept in a bounded
 * LRU (path -> Inode promise, so concurrent lookups of one path share the work, replaced by the Inode
 * once resolved, so that `known` answers without a promise) and a miss walks down only from the
 * deepest cached ancestor. The image is immutable, so entries never go stale.
 */
export class PathCache {
  private readonly entries = new Map<string, Promise<Inode> | Inode>();
  private readonly root: Promise<Inode>;
  private rootInode: Inode | undefined;
  hits = 0;
  misses = 0;

  constructor(
    private readonly reader: SquashfsReader,
    private readonly capacity = 65_536,
  ) {
    this.root = reader.root();
    // A failed root read is reported by whoever resolves a path; never an unhandled rejection.
    this.root.then(
      (inode) => {
        this.rootInode = inode;
      },
      () => undefined,
    );
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The inode at `path` when it can be had without waiting (most requests): resolved already, or one
   * step below a resolved directory whose listing and child inode the reader has decoded
   * (lookupChildNow). Else undefined: then use resolve, which also reports why a path fails.
   */
  known(path: string): Inode | undefined {
    if (path === '/' || path === '') return this.rootInode;
    const cached = this.entries.get(path);
    if (cached !== undefined) {
      if (cached instanceof Promise) return undefined;
      this.hit(path, cached);
      return cached;
    }
    if (this.reader.lookupChildNow === undefined) return undefined;
    const slash = path.lastIndexOf('/');
    const parent = this.known(slash <= 0 ? '/' : path.slice(0, slash));
    const child = parent === undefined ? undefined : this.reader.lookupChildNow(parent, path.slice(slash + 1));
    if (!child) return undefined;
    this.misses++;
    this.remember(path, child);
    return child;
  }

  /** The inode at an absolute FUSE path ("/", "/a/b"). Rejects with SquashfsError (ENOENT, ENOTDIR...). */
  resolve(path: string): Promise<Inode> {
    if (path === '/' || path === '') return this.root;
    const cached = this.entries.get(path);
    if (cached !== undefined) {
      this.hit(path, cached);
      return cached instanceof Promise ? cached : Promise.resolve(cached);
    }
    this.misses++;
    const slash = path.lastIndexOf('/');
    const parentPath = slash <= 0 ? '/' : path.slice(0, slash);
    const name = path.slice(slash + 1);
    const pending = this.resolve(parentPath).then(async (parent) => {
      const child = await this.reader.lookupChild(parent, name);
      if (!child) throw new SquashfsError('ENOENT', `no such file or directory: ${path}`, { path });
      return child;
    });
    this.remember(path, pending);
    return pending;
  }

  /** Counts a hit and makes the entry the most recently used. */
  private hit(path: string, entry: Promise<Inode> | Inode): void {
    this.hits++;
    this.entries.delete(path);
    this.entries.set(path, entry);
  }

  private remember(path: string, pending: Promise<Inode> | Inode): void {
    this.entries.set(path, pending);
    if (pending instanceof Promise) this.settle(path, pending);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  private settle(path: string, pending: Promise<Inode>): void {
    pending.then(
      (inode) => {
        // Same key: Map.set keeps its place in the LRU order.
        if (this.entries.get(path) === pending) this.entries.set(path, inode);
      },
      () => {
        // Misses are not cached: the kernel caches negative lookups itself (negative_timeout).
        if (this.entries.get(path) === pending) this.entries.delete(path);
      },
    );
  }
}

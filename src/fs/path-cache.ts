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

  /** The inode at `path` when it is resolved already (most requests), else undefined: then use resolve. */
  known(path: string): Inode | undefined {
    if (path === '/' || path === '') return this.rootInode;
    const cached = this.entries.get(path);
    if (cached === undefined || cached instanceof Promise) return undefined;
    this.hit(path, cached);
    return cached;
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

  private remember(path: string, pending: Promise<Inode>): void {
    this.entries.set(path, pending);
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
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }
}

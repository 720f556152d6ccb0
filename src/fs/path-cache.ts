import { SquashfsError } from '../squashfs/errors.js';
import type { Inode, SquashfsReader } from '../squashfs/types.js';

/**
 * fuse-native's high-level API names every file by path. Resolving each path from the root would
 * decode one directory per component on every call; instead resolved paths are kept in a bounded
 * LRU (path -> Inode promise, so concurrent lookups of one path share the work) and a miss walks
 * down only from the deepest cached ancestor. The image is immutable, so entries never go stale.
 */
export class PathCache {
  private readonly entries = new Map<string, Promise<Inode>>();
  private readonly root: Promise<Inode>;
  hits = 0;
  misses = 0;

  constructor(
    private readonly reader: SquashfsReader,
    private readonly capacity = 65_536,
  ) {
    this.root = reader.root();
    // A failed root read is reported by whoever resolves a path; never an unhandled rejection.
    this.root.catch(() => undefined);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The inode at an absolute FUSE path ("/", "/a/b"). Rejects with SquashfsError (ENOENT, ENOTDIR...). */
  resolve(path: string): Promise<Inode> {
    if (path === '/' || path === '') return this.root;
    const cached = this.entries.get(path);
    if (cached) {
      this.hits++;
      this.entries.delete(path);
      this.entries.set(path, cached);
      return cached;
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

  private remember(path: string, pending: Promise<Inode>): void {
    this.entries.set(path, pending);
    // Misses are not cached: the kernel caches negative lookups itself (negative_timeout).
    pending.catch(() => {
      if (this.entries.get(path) === pending) this.entries.delete(path);
    });
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }
}

import { LRUCache } from 'lru-cache';

/**
 * Decoded blocks in an LRU bounded by bytes, with in-flight sharing: concurrent requests for one
 * key wait on the same promise, so a block is fetched and decompressed once.
 * A failed load is not cached (the next request retries).
 */
export class BlockCache<V extends object> {
  private readonly lru: LRUCache<number, V>;
  private readonly inflight = new Map<number, Promise<V>>();
  hits = 0;
  misses = 0;

  /** `release`: called with every value that leaves the cache (evicted, replaced, cleared). */
  constructor(maxBytes: number, sizeOf: (v: V) => number, release?: (v: V) => void) {
    this.lru = new LRUCache<number, V>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (v) => Math.max(1, sizeOf(v)),
      ...(release ? { dispose: (v: V) => release(v) } : {}),
    });
  }

  get(key: number): V | undefined {
    const v = this.lru.get(key);
    if (v !== undefined) this.hits++;
    return v;
  }

  pending(key: number): Promise<V> | undefined {
    return this.inflight.get(key);
  }

  /** The cached value, the in-flight load, or a new load (registered until it settles). */
  load(key: number, loader: () => Promise<V>): Promise<V> {
    const hit = this.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    this.misses++;
    const p = loader().then(
      (v) => {
        this.inflight.delete(key);
        this.lru.set(key, v);
        return v;
      },
      (e: unknown) => {
        this.inflight.delete(key);
        throw e;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  get size(): number {
    return this.lru.calculatedSize;
  }

  clear(): void {
    this.lru.clear();
  }
}

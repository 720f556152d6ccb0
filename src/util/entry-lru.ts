import { LRUCache } from 'lru-cache';

/**
 * An LRU of at most `entries` entries: lru-cache's `maxSize` with every entry of size 1, not its `max`.
 * `max` allocates its arrays for every entry at construction (2.6-3.5 ms for 16,384 here), and an image
 * open makes six of these on the way to a mount's first answer; `maxSize` grows them as entries come.
 * Gets and sets measured the same (a million of each over 40,000 keys).
 */
export function entryLru<K extends {}, V extends {}>(entries: number): LRUCache<K, V> {
  return new LRUCache<K, V>({ maxSize: entries, sizeCalculation: () => 1 });
}

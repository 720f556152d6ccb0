import { describe, expect, it } from 'vitest';
import { entryLru } from '../../src/util/entry-lru.js';

describe('entryLru', () => {
  it('holds at most its entries and drops the least recently used first', () => {
    const lru = entryLru<number, string>(3);
    for (const k of [1, 2, 3]) lru.set(k, `v${k}`);
    expect(lru.get(1)).toBe('v1'); // 1 is now the most recent: 2 goes first
    lru.set(4, 'v4');
    expect([...lru.keys()].sort()).toEqual([1, 3, 4]);
    for (let k = 10; k < 1000; k++) lru.set(k, `v${k}`);
    expect(lru.size).toBe(3);
    expect([...lru.keys()].sort()).toEqual([997, 998, 999]);
  });

  it('peek does not refresh, delete frees a place', () => {
    const lru = entryLru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.peek('a')).toBe(1);
    lru.set('c', 3); // 'a' was least recently used despite the peek
    expect(lru.has('a')).toBe(false);
    lru.delete('b');
    lru.set('d', 4);
    expect([...lru.keys()].sort()).toEqual(['c', 'd']);
  });
});

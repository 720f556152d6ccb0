import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { loadDecompressor } from '../../src/squashfs/compression/index.js';

// Runs in its own worker process (pool: forks), so the require cache shows what this file loaded.
const loadedNative = () =>
  Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules\/(lzma-native|lzo|zstd-napi|lz4-napi|@napi-rs\/lzma)\//.test(k));

it('opening an lz4 image loads lz4-napi and none of the other codec packages', async () => {
  expect(loadedNative()).toEqual([]);
  const lz4 = await loadDecompressor(5);
  expect(lz4.name).toBe('lz4');
  const loaded = loadedNative();
  expect(loaded.some((k) => k.includes('lz4-napi'))).toBe(true);
  expect(loaded.filter((k) => !k.includes('lz4-napi'))).toEqual([]);
  await loadDecompressor(4);
  expect(loadedNative().some((k) => k.includes('lzma-native'))).toBe(true);
});

import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { loadDecompressor } from '../../src/squashfs/compression/index.js';
import { lz4DataDecoder } from '../../src/squashfs/compression/lz4.js';

// Runs in its own worker process (pool: forks), so the require cache shows what this file loaded.
const loadedNative = () =>
  Object.keys(createRequire(import.meta.url).cache).filter((k) =>
    /node_modules\/(lzma-native|lzo|zstd-napi|lz4-napi|@napi-rs\/lzma)\//.test(k),
  );

it('lz4 decodes in TypeScript, loading no codec package, until warm() loads lz4-napi', async () => {
  expect(loadedNative()).toEqual([]);
  const lz4 = await loadDecompressor(5);
  expect(lz4.name).toBe('lz4');
  // "aaaa..." in LZ4: 1 literal, then a match of the rest at offset 1, then one closing literal.
  const block = (n: number) => Uint8Array.from([0x1f, 0x61, 0x01, 0x00, ...lengthBytes(n - 2 - 19), 0x10, 0x61]);
  expect(Buffer.from(await lz4.decompress(block(8192), 8192)).equals(Buffer.alloc(8192, 'a'))).toBe(true);
  for (let i = 0; i < 64; i++) {
    expect(Buffer.from(await lz4.decompress(block(128 << 10), 128 << 10)).equals(Buffer.alloc(128 << 10, 'a'))).toBe(
      true,
    );
  }
  await new Promise((r) => setTimeout(r, 50));
  expect(loadedNative()).toEqual([]); // metadata and 8 MiB of data: no codec package loaded
  expect(lz4DataDecoder()).toBe('typescript');
  lz4.warm?.();
  for (let i = 0; i < 50 && lz4DataDecoder() !== 'native'; i++) await new Promise((r) => setTimeout(r, 20));
  expect(lz4DataDecoder()).toBe('native');
  expect(loadedNative().some((k) => k.includes('lz4-napi'))).toBe(true);
  // Same bytes from the native decoder.
  expect(Buffer.from(await lz4.decompress(block(128 << 10), 128 << 10)).equals(Buffer.alloc(128 << 10, 'a'))).toBe(
    true,
  );
  expect(loadedNative().filter((k) => !k.includes('lz4-napi'))).toEqual([]);
  await loadDecompressor(4);
  expect(loadedNative().some((k) => k.includes('lzma-native'))).toBe(true);
});

/** The extra length bytes of a match-length nibble of 15: `rest` more than 15 + 4. */
function lengthBytes(rest: number): number[] {
  const out: number[] = [];
  while (rest >= 255) {
    out.push(255);
    rest -= 255;
  }
  out.push(rest);
  return out;
}

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { FileSource } from '../../src/r2/file.js';
import { lz4DataDecoder } from '../../src/squashfs/compression/lz4.js';
import { SquashfsImage } from '../../src/squashfs/image.js';
import { ensureFixtures } from '../helpers/fixtures.js';

// Its own worker process: lz4-napi is loaded or not by this file alone.
const lz4NapiLoaded = () =>
  Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('node_modules/lz4-napi/'));

it('an lz4 image opens and lists without lz4-napi; its first data read loads it, during that read', async () => {
  const fixture = (await ensureFixtures()).find((f) => f.name === 'lz4')!;
  const image = await SquashfsImage.open(await FileSource.open(fixture.path));
  try {
    expect((await image.root()).stat.type).toBe('directory');
    expect((await image.readdir('/sizes')).length).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(lz4NapiLoaded()).toBe(false); // metadata only: the TypeScript decoder
    expect(lz4DataDecoder()).toBe('typescript');
    // The first data read: right bytes whichever decoder it meets, and lz4-napi starts loading.
    const text = await image.read('/sizes/text-131073', 0, 131_073);
    const expected = await readFile(join(fixture.sourceTree, 'sizes/text-131073'));
    expect(Buffer.from(text).equals(expected)).toBe(true);
    for (let i = 0; i < 100 && lz4DataDecoder() !== 'native'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(lz4DataDecoder()).toBe('native');
    expect(lz4NapiLoaded()).toBe(true);
    // And data still reads right through it: another file, then the same one again.
    const other = await image.read('/sizes/text-131072', 0, 131_072);
    expect(Buffer.from(other).equals(await readFile(join(fixture.sourceTree, 'sizes/text-131072')))).toBe(true);
  } finally {
    await image.close();
  }
});

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

it('an lz4 image opens without lz4-napi; warmUp (what a mount calls once it serves) loads it for the data blocks', async () => {
  const fixture = (await ensureFixtures()).find((f) => f.name === 'lz4')!;
  const image = await SquashfsImage.open(await FileSource.open(fixture.path));
  try {
    expect((await image.root()).stat.type).toBe('directory');
    expect(lz4NapiLoaded()).toBe(false);
    expect(lz4DataDecoder()).toBe('typescript');
    image.warmUp();
    for (let i = 0; i < 100 && lz4DataDecoder() !== 'native'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(lz4DataDecoder()).toBe('native');
    expect(lz4NapiLoaded()).toBe(true);
    // And data still reads right through it: the fixture's text file against its source.
    const text = await image.read('/sizes/text-131073', 0, 131_073);
    expect(Buffer.from(text).equals(await readFile(join(fixture.sourceTree, 'sizes/text-131073')))).toBe(true);
  } finally {
    await image.close();
  }
});

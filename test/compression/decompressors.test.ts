import { createRequire } from 'node:module';
import { deflateSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { SquashfsError } from '../../src/squashfs/errors.js';
import { describeOptions, loadDecompressor, type Decompressor } from '../../src/squashfs/compression/index.js';
import { ensureFixtures, type Fixture } from '../helpers/fixtures.js';
import { dataBlocks, firstInodeBlock, readHeader } from './blocks.js';

const require = createRequire(import.meta.url);

/** Images whose blocks each codec must decode (every compressor, option variant and block size). */
const CODEC_FIXTURES = ['gzip', 'gzip-opts', 'gzip-4k', 'lzma', 'lzo', 'lzo-1x1', 'xz', 'xz-bcj-x86', 'lz4', 'lz4-hc', 'lz4-4k', 'zstd', 'zstd-19', 'zstd-1m', 'tar2sqfs-zstd', 'tar2sqfs-lzo-notail'];
const METADATA_BLOCK = 8192;

let fixtures: Map<string, Fixture>;

beforeAll(async () => {
  fixtures = new Map((await ensureFixtures()).map((f) => [f.name, f]));
});

async function decompressorFor(name: string): Promise<{ dec: Decompressor; blockSize: number; fixture: Fixture }> {
  const fixture = fixtures.get(name)!;
  const header = await readHeader(fixture.path);
  return { dec: await loadDecompressor(header.compressorId, header.options), blockSize: header.blockSize, fixture };
}

async function expectCorrupt(p: Promise<unknown>, pattern?: RegExp): Promise<SquashfsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SquashfsError);
  expect((err as SquashfsError).code).toBe('ECORRUPT');
  if (pattern) expect((err as SquashfsError).message).toMatch(pattern);
  return err as SquashfsError;
}

describe.each(CODEC_FIXTURES)('decompressor on real blocks of %s', (name) => {
  it('decodes every compressed data block of a mixed file to the source bytes', async () => {
    const { dec, blockSize, fixture } = await decompressorFor(name);
    expect(dec.name).toBe(fixture.compressor);
    let compressedSeen = 0;
    for (const path of ['/sizes/mixed-2M', '/sizes/text-131073', '/dup-a']) {
      for (const block of await dataBlocks(fixture.path, fixture.sourceTree, path)) {
        if (!block.compressed) continue;
        compressedSeen++;
        const out = await dec.decompress(block.stored, blockSize);
        expect(out.length, `${path} block ${block.index}`).toBe(block.expected.length);
        expect(Buffer.from(out).equals(block.expected), `${path} block ${block.index}`).toBe(true);
      }
    }
    expect(compressedSeen).toBeGreaterThanOrEqual(2);
  });

  it('decodes the first inode-table metadata block to a full 8 KiB of plausible inodes', async () => {
    const { dec } = await decompressorFor(name);
    const block = await firstInodeBlock(fixtures.get(name)!.path);
    expect(block.compressed).toBe(true);
    const out = Buffer.from(await dec.decompress(block.payload, METADATA_BLOCK));
    expect(out.length).toBe(METADATA_BLOCK);
    const type = out.readUInt16LE(0);
    expect(type).toBeGreaterThanOrEqual(1);
    expect(type).toBeLessThanOrEqual(14);
    expect([0, 1_600_000_000, 0xffff_ffff]).toContain(out.readUInt32LE(8));
  });

  it('refuses a block that decodes to more than the bound, and garbage, with ECORRUPT', async () => {
    const { dec, blockSize, fixture } = await decompressorFor(name);
    const full = (await dataBlocks(fixture.path, fixture.sourceTree, '/sizes/mixed-2M')).find((b) => b.compressed && b.expected.length === blockSize)!;
    await expectCorrupt(dec.decompress(full.stored, blockSize - 1), new RegExp(`corrupt ${fixture.compressor} block`));
    const meta = await firstInodeBlock(fixture.path);
    await expectCorrupt(dec.decompress(meta.payload, 100));
    const truncated = full.stored.subarray(0, full.stored.length >> 1);
    if (fixture.compressor === 'lz4') {
      // A raw LZ4 block has no end marker: cut at a literal run it decodes "fine", only shorter.
      // The reader's exact-size check on data blocks is what catches this for lz4.
      const out = await dec.decompress(truncated, blockSize).catch((e: unknown) => e);
      if (!(out instanceof SquashfsError)) expect((out as Uint8Array).length).toBeLessThan(blockSize);
    } else {
      await expectCorrupt(dec.decompress(truncated, blockSize));
    }
    await expectCorrupt(dec.decompress(Buffer.from('this is not a compressed block at all, just text'), blockSize));
    await expectCorrupt(dec.decompress(new Uint8Array(0), blockSize));
    // The decoder still works after failures (no poisoned state).
    expect((await dec.decompress(full.stored, blockSize)).length).toBe(blockSize);
  });
});

describe('one decompressor, many blocks', () => {
  it('lz4: results kept across calls stay intact (the input buffer is reused, outputs are not)', async () => {
    const lz4 = require('lz4-napi') as { compressSync(b: Buffer): Buffer };
    const dec = await loadDecompressor(5);
    const sources = [70_000, 300, 131_072, 5].map((n, i) => Buffer.from(Array.from({ length: n }, (_, j) => (j * (i + 7)) % 251)));
    const decoded: Uint8Array[] = [];
    for (const src of sources) decoded.push(await dec.decompress(lz4.compressSync(src).subarray(4), 131_072));
    for (const [i, d] of decoded.entries()) expect(Buffer.from(d).equals(sources[i]!), `block ${i}`).toBe(true);
  });
});

describe('decompression bombs (1 MiB of zeros, bound 8 KiB)', () => {
  const zeros = Buffer.alloc(1 << 20);
  const lzmaNative = require('lzma-native') as { compress(b: Buffer, opts: object): Promise<Buffer> };

  it('gzip', async () => {
    await expectCorrupt((await loadDecompressor(1)).decompress(deflateSync(zeros), METADATA_BLOCK), /more than 8192/);
  });
  it('lz4', async () => {
    const lz4 = require('lz4-napi') as { compressSync(b: Buffer): Buffer };
    const raw = lz4.compressSync(zeros).subarray(4); // drop lz4-napi's own size prefix: squashfs stores raw blocks
    await expectCorrupt((await loadDecompressor(5)).decompress(raw, METADATA_BLOCK), /more than 8192/);
  });
  it('zstd (declared content size is refused before decoding)', async () => {
    const zstd = require('zstd-napi') as { compress(b: Buffer): Buffer };
    await expectCorrupt((await loadDecompressor(6)).decompress(zstd.compress(zeros), METADATA_BLOCK), /declares 1048576 bytes/);
  });
  it('lzo', async () => {
    const lzo = require('lzo') as { compress(b: Buffer): Buffer };
    await expectCorrupt((await loadDecompressor(3)).decompress(lzo.compress(zeros), METADATA_BLOCK), /more than 8192/);
  });
  it('xz', async () => {
    const xz = await lzmaNative.compress(zeros, { preset: 1 });
    await expectCorrupt((await loadDecompressor(4)).decompress(xz, METADATA_BLOCK), /more than 8192/);
  });
  it('lzma, with the size stated in the header and with it unknown', async () => {
    const stream = (require('lzma-native') as { LZMA_Alone?: unknown; createStream(k: string, o: object): NodeJS.ReadWriteStream }).createStream('aloneEncoder', { preset: 1 });
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => resolve());
      stream.on('error', reject);
    });
    stream.end(zeros);
    await done;
    const alone = Buffer.concat(chunks);
    const dec = await loadDecompressor(2);
    const stated = Buffer.from(alone);
    stated.writeBigUInt64LE(BigInt(zeros.length), 5);
    await expectCorrupt(dec.decompress(stated, METADATA_BLOCK), /header states 1048576/);
    const unknown = Buffer.from(alone);
    unknown.fill(0xff, 5, 13);
    await expectCorrupt(dec.decompress(unknown, METADATA_BLOCK), /more than 8192/);
    // ...and the same stream decodes when the bound allows it.
    expect((await dec.decompress(unknown, 1 << 20)).length).toBe(1 << 20);
  });
});

describe('compression options', () => {
  it('describes the options block of each fixture like unsquashfs -s does', async () => {
    const expected: Record<string, string> = {
      gzip: 'gzip: defaults (level 9, window 15 bits)',
      'gzip-opts': 'gzip: level 1, window 12 bits, strategies: default',
      'lzo-1x1': 'lzo: lzo1x_1',
      'xz-bcj-x86': 'xz: dictionary 65536 bytes, filters: x86',
      lz4: 'lz4: default',
      'lz4-hc': 'lz4: high compression',
      'zstd-19': 'zstd: level 19',
    };
    for (const [name, text] of Object.entries(expected)) {
      const h = await readHeader(fixtures.get(name)!.path);
      expect(describeOptions(h.compressorId, h.options), name).toBe(text);
      const dec = await loadDecompressor(h.compressorId, h.options);
      expect(dec.options?.summary === undefined ? 'none' : 'some').toBe(h.options ? 'some' : 'none');
    }
  });

  const u32s = (...v: number[]) => Buffer.from(new Uint32Array(v).buffer);
  const bad: [string, number, Buffer, RegExp][] = [
    ['gzip level 0', 1, Buffer.from('000000000f000100', 'hex'), /level 0/],
    ['gzip window 16', 1, Buffer.from('0900000010000100', 'hex'), /window 16/],
    ['gzip unknown strategy', 1, Buffer.from('090000000f004000', 'hex'), /strategy bits/],
    ['gzip short', 1, Buffer.from('09000000', 'hex'), /4 bytes, expected 8/],
    ['lzo algorithm 5', 3, u32s(5, 0), /unknown algorithm 5/],
    ['lzo level on lzo1x_1', 3, u32s(0, 3), /level 3 is not valid for lzo1x_1/],
    ['lzo 999 level 10', 3, u32s(4, 10), /level 10/],
    ['xz dict not 2^n', 4, u32s(100_000, 0), /dictionary size/],
    ['xz dict too big', 4, u32s(1 << 24, 0), /dictionary size/],
    ['xz unknown filter', 4, u32s(1 << 17, 0x100), /filter bits/],
    ['lz4 version 2', 5, u32s(2, 0), /version 2/],
    ['lz4 unknown flag', 5, u32s(1, 8), /unknown flags/],
    ['zstd level 0', 6, u32s(0), /level 0/],
    ['zstd level 23', 6, u32s(23), /level 23/],
    ['lzma has none', 2, u32s(1), /no compression options/],
  ];
  it.each(bad)('rejects %s', async (_label, id, payload, pattern) => {
    expect(() => describeOptions(id, payload)).toThrow(pattern);
    const err = await loadDecompressor(id, payload).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SquashfsError);
    expect((err as SquashfsError).code).toBe('ECORRUPT');
  });

  it('accepts the 12-byte lz4 variant and 3*2^n xz dictionaries', () => {
    expect(describeOptions(5, u32s(1, 3, 9))).toBe('lz4: high compression, level 9');
    expect(describeOptions(4, u32s(3 << 16, 0x41))).toBe('xz: dictionary 196608 bytes, filters: x86,arm64');
  });

  it('rejects unknown compressor ids as EUNSUPPORTED', async () => {
    for (const id of [0, 7, 0xffff]) {
      const err = await loadDecompressor(id).catch((e: unknown) => e);
      expect((err as SquashfsError).code).toBe('EUNSUPPORTED');
    }
  });
});

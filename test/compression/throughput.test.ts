/**
 * Decompressor throughput on real 128 KiB data blocks of the fixture images (MB/s of output).
 * A measurement, not a check: skipped unless asked for.
 *   BENCH_DECOMPRESSORS=1 npx vitest run test/compression/throughput.test.ts
 */
import { expect, it } from 'vitest';
import { loadDecompressor } from '../../src/squashfs/compression/index.js';
import { fixture } from '../helpers/fixtures.js';
import { dataBlocks, readHeader } from './blocks.js';

const FILES = ['/sizes/mixed-2M', '/sizes/text-1048576', '/sizes/text-262144', '/dup-a'];

it.runIf(process.env.BENCH_DECOMPRESSORS)('MB/s per codec on real 128 KiB blocks', async () => {
  const rows: string[] = [];
  for (const name of ['gzip', 'lz4', 'lz4-hc', 'zstd', 'lzo', 'xz', 'xz-bcj-x86', 'lzma']) {
    const f = await fixture(name);
    const h = await readHeader(f.path);
    const dec = await loadDecompressor(h.compressorId, h.options);
    const blocks = [];
    for (const p of FILES) for (const b of await dataBlocks(f.path, f.sourceTree, p)) if (b.compressed && b.expected.length === h.blockSize) blocks.push(b.stored);
    let bytes = 0;
    let inBytes = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    while (performance.now() - t0 < 1500) {
      for (const b of blocks) {
        bytes += (await dec.decompress(b, h.blockSize)).length;
        inBytes += b.length;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    // Per CPU-second as well: on a shared machine wall time mostly measures the neighbours.
    rows.push(
      `${name.padEnd(11)} ${String(blocks.length).padStart(3)} blocks  ratio ${(inBytes / bytes).toFixed(2)}  ` +
        `${(bytes / seconds / 1e6).toFixed(0).padStart(5)} MB/s wall  ${(bytes / cpuSeconds / 1e6).toFixed(0).padStart(5)} MB per CPU-second`,
    );
    expect(bytes).toBeGreaterThan(0);
  }
  console.log(rows.join('\n'));
}, 120_000);

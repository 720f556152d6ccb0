import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ensureFixtures } from './helpers/fixtures.js';

const execFileP = promisify(execFile);

describe('fixtures/build.sh', () => {
  it('builds every compressor, both writers and the feature variants', async () => {
    const all = await ensureFixtures();
    const compressors = new Set(all.map((f) => f.compressor));
    expect([...compressors].sort()).toEqual(['gzip', 'lz4', 'lzma', 'lzo', 'xz', 'zstd']);
    expect(all.some((f) => f.builder === 'tar2sqfs')).toBe(true);
    for (const opt of ['-noI', '-no-fragments', '-always-use-fragments', '-no-xattrs', '-no-exports', '-Xbcj', '-Xhc']) {
      expect(all.some((f) => f.options.split(' ').includes(opt)), opt).toBe(true);
    }
    expect(all.find((f) => f.compressor === 'lzma')?.kernelMountable).toBe(false);
  });

  it('each image is what index.json says it is (unsquashfs -s)', async () => {
    for (const f of await ensureFixtures()) {
      expect((await stat(f.path)).size, f.name).toBeGreaterThan(4096);
      const { stdout } = await execFileP('unsquashfs', ['-s', f.path]);
      expect(stdout, f.name).toContain(`Compression ${f.compressor}`);
    }
  });

  it('a second run is a fast no-op that leaves the images alone', async () => {
    const all = await ensureFixtures();
    const before = (await stat(all[0]!.path)).mtimeMs;
    const t0 = Date.now();
    await execFileP('bash', ['fixtures/build.sh']);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await stat(all[0]!.path)).mtimeMs).toBe(before);
  });
});

import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ensureFixtures, fixture } from './helpers/fixtures.js';
import { withKernelMount, withOracleTree, withUnsquashfsExtract } from './helpers/kernel-mount.js';
import { type ManifestEntry, diffManifests, manifestFromTree } from './helpers/manifest.js';

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
    expect(Date.now() - t0).toBeLessThan(15_000); // generous: the machine is shared
    expect((await stat(all[0]!.path)).mtimeMs).toBe(before);
  });
});

describe('oracle helpers (manifest, kernel mount, unsquashfs extraction)', () => {
  it('kernel mount and unsquashfs -d agree on a mksquashfs image, and both equal the source tree', async () => {
    const gzip = await fixture('gzip');
    const kernel = await withKernelMount(gzip.path, (d) => manifestFromTree(d));
    const extracted = await withUnsquashfsExtract(gzip.path, (d) => manifestFromTree(d));
    const source = await manifestFromTree(gzip.sourceTree);
    expect(kernel.length).toBeGreaterThan(3000);
    // Documented difference: directory st_size (stored listing size + 3 vs ext4's block size).
    expect(diffManifests(kernel, extracted)).toEqual([]);
    expect(diffManifests(source, kernel)).toEqual([]);
    expect(diffManifests(kernel, extracted, { dirSize: true }).length).toBeGreaterThan(0);
    // Spot checks that the walk really saw the features.
    const byPath = new Map(kernel.map((e) => [e.path, e]));
    expect(byPath.get('/special/socket')?.type).toBe('socket');
    expect(byPath.get('/special/big-char')?.rdev).toBe('300,70000');
    expect(byPath.get('/links/hard-2')?.linkGroup).toBe('/hard-3');
    expect(byPath.get('/links/sym-4000')?.target?.length).toBe(4000);
    expect(byPath.get('/perms/setuid')?.mode).toBe(0o4755);
    expect(byPath.get('/xattrs/long-only')?.xattrs).toContain(`user.long=${Buffer.from(Array.from({ length: 512 }, (_, i) => i & 255)).toString('hex')}`);
    expect(byPath.get('/names/tab\tand\nnewline')?.type).toBe('file');
  });

  it('tar2sqfs images differ from extraction only in directory nlink/size (writer convention)', async () => {
    const ng = await fixture('tar2sqfs-gzip');
    const kernel = await withKernelMount(ng.path, (d) => manifestFromTree(d, { hash: false }));
    const extracted = await withUnsquashfsExtract(ng.path, (d) => manifestFromTree(d, { hash: false }));
    expect(diffManifests(kernel, extracted, { dirNlink: false })).toEqual([]);
    expect(diffManifests(kernel, extracted).some((d) => d.includes('nlink'))).toBe(true);
  });

  it('lzma falls back to unsquashfs extraction, which matches the gzip image of the same tree', async () => {
    const lzma = await fixture('lzma');
    const gzip = await fixture('gzip');
    const viaOracle = await withOracleTree(lzma, async (d, kind) => ({ kind, m: await manifestFromTree(d) }));
    expect(viaOracle.kind).toBe('unsquashfs');
    const kernelGzip = await withKernelMount(gzip.path, (d) => manifestFromTree(d));
    expect(diffManifests(kernelGzip, viaOracle.m)).toEqual([]);
  });

  it('diffManifests reports every kind of difference', async () => {
    const base: ManifestEntry[] = [
      { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 3, mtime: 1, nlink: 2, xattrs: [] },
      { path: '/f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 1, nlink: 1, xattrs: ['user.a=00'], sha256: 'aa' },
    ];
    const changed = structuredClone(base);
    changed[1]!.mode = 0o600;
    changed[1]!.sha256 = 'bb';
    changed[1]!.xattrs = [];
    changed.push({ ...base[1]!, path: '/g' });
    const diff = diffManifests(base, changed);
    expect(diff).toEqual([
      '/f: mode a=0o644 b=0o600',
      '/f: xattrs a=[user.a=00] b=[]',
      '/f: sha256 a="aa" b="bb"',
      '/g: only in b (file)',
    ]);
    expect(diffManifests(changed, base)).toContain('/g: only in a (file)');
    expect(diffManifests(base, changed, { ignore: ['mode', 'sha256', 'xattrs'], skip: (e) => e.path === '/g' })).toEqual([]);
  });

  it('withKernelMount unmounts and detaches its loop device, also when the callback throws', async () => {
    const gzip = await fixture('gzip');
    let seen: { dir: string; dev: string } | undefined;
    await expect(
      withKernelMount(gzip.path, async (dir) => {
        const dev = (await execFileP('findmnt', ['-n', '-o', 'SOURCE', dir])).stdout.trim();
        seen = { dir, dev };
        throw new Error('callback failed');
      }),
    ).rejects.toThrow('callback failed');
    expect(seen?.dev).toMatch(/^\/dev\/loop\d+$/);
    await expect(execFileP('findmnt', ['-n', seen!.dir])).rejects.toThrow();
    // Autoclear detaches the device at umount (allow the kernel a moment to finish).
    let backing = gzip.path;
    for (let i = 0; i < 50 && backing === gzip.path; i++) {
      backing = (await execFileP('losetup', ['-n', '-O', 'BACK-FILE', seen!.dev]).catch(() => ({ stdout: '' }))).stdout.trim();
      if (backing === gzip.path) await new Promise((r) => setTimeout(r, 100));
    }
    expect(backing).not.toBe(gzip.path);
    await expect(stat(seen!.dir)).rejects.toThrow();
  });
});

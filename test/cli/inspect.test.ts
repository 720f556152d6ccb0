import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFixtures, fixture, type Fixture } from '../helpers/fixtures.js';
import { withKernelMount, withUnsquashfsExtract } from '../helpers/kernel-mount.js';
import { diffManifests, manifestFromTree } from '../helpers/manifest.js';
import { CLI, ensureBuilt, runCli } from './run-cli.js';

const execFileP = promisify(execFile);

let work: string;

beforeAll(async () => {
  await Promise.all([ensureFixtures(), ensureBuilt()]);
  work = await mkdtemp(join(tmpdir(), 'sqfs-cli-'));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const text = (b: Buffer) => b.toString('utf8');

describe('extract matches unsquashfs -d (manifest: type, mode, owner, mtime, size, nlink, rdev, target, xattrs, sha256, hard links)', async () => {
  // One image per compressor and per layout option by default (each costs seconds on 2 cores);
  // EXTRACT_ALL_FIXTURES=1 runs every fixture.
  // (The reader itself is compared with the kernel on every fixture in test/squashfs.)
  const representative = new Set(['gzip', 'lzma', 'xz-bcj-x86', 'lz4', 'zstd-1m', 'gzip-4k', 'gzip-uncompressed', 'zstd-always-fragments', 'tar2sqfs-lzo-notail']);
  const all = (await ensureFixtures()).filter((f) => f.name !== 'big-sparse' && (process.env.EXTRACT_ALL_FIXTURES || representative.has(f.name)));
  it.each(all.map((f) => [f.name, f] as [string, Fixture]))('%s', async (_name, f) => {
    const dest = join(work, `extract-${f.name}`);
    const [result, theirs] = await Promise.all([
      runCli(['extract', '-q', f.path, dest]),
      withUnsquashfsExtract(f.path, (d) => manifestFromTree(d)),
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const ours = await manifestFromTree(dest);
    // Directory st_size is the host file system's on both sides, so it is compared too.
    expect(diffManifests(theirs, ours, { dirSize: true })).toEqual([]);
    await rm(dest, { recursive: true, force: true });
  });

  it('big-sparse: a 5 GiB file with holes stays sparse and reads back identically', async () => {
    const f = await fixture('big-sparse');
    const dest = join(work, 'extract-big');
    expect((await runCli(['extract', '-q', f.path, dest])).code).toBe(0);
    const st = await lstat(join(dest, 'sparse-5G'));
    expect(st.size).toBe(5 * 1024 ** 3 + 12345);
    expect(st.blocks * 512).toBeLessThan(64 * 1024 * 1024); // holes, not 5 GiB of zeros on disk
    const ours = await manifestFromTree(dest);
    const kernel = await withKernelMount(f.path, (d) => manifestFromTree(d));
    expect(diffManifests(kernel, ours)).toEqual([]);
    await rm(dest, { recursive: true, force: true });
  }, 600_000);

  it('a subtree path extracts that subtree under its parent directories', async () => {
    const f = await fixture('zstd');
    const dest = join(work, 'extract-subtree');
    expect((await runCli(['extract', '-q', f.path, dest, '/links'])).code).toBe(0);
    expect(await readdir(dest)).toEqual(['links']);
    const ours = await manifestFromTree(join(dest, 'links'));
    const theirs = await withUnsquashfsExtract(f.path, (d) => manifestFromTree(join(d, 'links')));
    // hard-3 lives outside /links, so the link group differs: unsquashfs (extracting all) vs us (subtree).
    expect(diffManifests(theirs, ours, { ignore: ['nlink', 'linkGroup'] })).toEqual([]);
    await rm(dest, { recursive: true, force: true });
  });
});

describe('ls', () => {
  it('ls -lR equals GNU ls -lnRAN on the kernel mount (modes, links, owners, sizes, devices, times, targets)', async () => {
    const f = await fixture('lz4');
    const ours = await runCli(['ls', '-lR', f.path]);
    expect(ours.code).toBe(0);
    const gnu = await withKernelMount(f.path, async (dir) => {
      const { stdout } = await execFileP('ls', ['-lnRAN', '--time-style=+%Y-%m-%d %H:%M', dir], {
        env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' },
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout.split(dir).join('');
    });
    const normalise = (s: string) =>
      s
        .split('\n')
        .filter((l) => !l.startsWith('total '))
        .map((l) => l.replace(/ +/g, ' ').replace(/^:$/, '/:'))
        .join('\n')
        .trim();
    expect(normalise(text(ours.stdout))).toBe(normalise(gnu));
  });

  it('plain ls lists names, a file path names the file, -l shows device numbers', async () => {
    const f = await fixture('gzip');
    expect(text((await runCli(['ls', f.path, '/special'])).stdout)).toBe('big-char\nfifo\nloop-block\nnull-char\nsocket\n');
    expect(text((await runCli(['ls', f.path, 'links/hard-1'])).stdout)).toBe('/links/hard-1\n');
    const long = text((await runCli(['ls', '-l', f.path, '/special'])).stdout);
    expect(long).toContain('crw------- 1 0 0 300, 70000 2020-09-13 12:26 big-char\n');
    expect(long).toContain('prw--w---- 1 42 43 0 2020-09-13 12:26 fifo\n');
  });

  it('ls of the 3000-entry directory piped into head exits 0 without an error', async () => {
    const f = await fixture('gzip');
    await ensureBuilt();
    const { stdout, stderr } = await execFileP('bash', ['-o', 'pipefail', '-c', `"${CLI}" ls -l "${f.path}" /bigdir | head -n 3`]);
    expect(stdout.split('\n').filter(Boolean)).toHaveLength(3);
    expect(stderr).toBe('');
  });
});

describe('stat', () => {
  it('a path: the kernel lstat of the same path', async () => {
    const f = await fixture('xz-bcj-x86');
    for (const path of ['/links/hard-1', '/special/big-char', '/links/sym-4000', '/perms/setuid', '/bigdir', '/']) {
      const r = await runCli(['stat', '--json', f.path, path]);
      expect(r.code, r.stderr).toBe(0);
      const ours = JSON.parse(text(r.stdout));
      const st = await withKernelMount(f.path, (d) => lstat(join(d, path)));
      expect({ ino: ours.ino, mode: ours.mode, nlink: ours.nlink, uid: ours.uid, gid: ours.gid, size: ours.size, mtime: ours.mtime, blocks: ours.blocks }, path).toEqual({
        ino: st.ino,
        mode: st.mode & 0o7777,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtime: Math.floor(st.mtimeMs / 1000),
        blocks: st.blocks,
      });
    }
  });

  it('text output shows type, mode string, device, target and xattrs', async () => {
    const f = await fixture('gzip');
    const dev = text((await runCli(['stat', f.path, '/special/loop-block'])).stdout);
    expect(dev).toMatch(/^type: +block-device$/m);
    expect(dev).toMatch(/^mode: +0660 \(brw-rw----\)$/m);
    expect(dev).toMatch(/^device: +7, 200$/m);
    const hl = text((await runCli(['stat', f.path, '/links/hard-2'])).stdout);
    expect(hl).toMatch(/^links: +3$/m);
    expect(hl).toContain('  user.on-hardlink="shared by 3 names"\n');
    const setuid = text((await runCli(['stat', f.path, '/perms/setuid'])).stdout);
    expect(setuid).toMatch(/^mode: +4755 \(-rwsr-xr-x\)$/m);
  });

  it('no path: the superblock summary agrees with unsquashfs -s and shows compressor options', async () => {
    for (const [name, compressorLine] of [
      ['xz-bcj-x86', 'xz: dictionary 65536 bytes, filters: x86'],
      ['lz4-hc', 'lz4: high compression'],
      ['zstd', 'zstd: defaults (level 15)'],
    ]) {
      const f = await fixture(name!);
      const r = await runCli(['stat', f.path]);
      expect(r.code).toBe(0);
      const out = text(r.stdout);
      expect(out).toMatch(new RegExp(`^compressor: +${compressorLine!.replace(/[()]/g, '\\$&')}$`, 'm'));
      const { stdout: ref } = await execFileP('unsquashfs', ['-s', f.path]);
      expect(out).toMatch(new RegExp(`^inodes: +${/Number of inodes (\d+)/.exec(ref)![1]}$`, 'm'));
      expect(out).toMatch(new RegExp(`^block size: +${/Block size (\d+)/.exec(ref)![1]}$`, 'm'));
      expect(out).toMatch(new RegExp(`^bytes used: +${/Filesystem size (\d+) bytes/.exec(ref)![1]}$`, 'm'));
    }
  });
});

describe('cat', () => {
  it('writes file content byte for byte (several files in order)', async () => {
    const f = await fixture('lzo');
    const r = await runCli(['cat', f.path, '/sizes/mixed-2M', 'sparse/holes-3M']);
    expect(r.code).toBe(0);
    const expected = Buffer.concat([await readFile(join(f.sourceTree, 'sizes/mixed-2M')), await readFile(join(f.sourceTree, 'sparse/holes-3M'))]);
    expect(sha256(r.stdout)).toBe(sha256(expected));
  });

  it('stops quietly with status 0 when the reader of stdout goes away', async () => {
    const f = await fixture('gzip');
    await ensureBuilt();
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(CLI, ['cat', f.path, '/sizes/mixed-2M'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c));
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});

describe('errors exit non-zero with a clear message', () => {
  it.each([
    ['a missing image', ['ls', '/nonexistent/image.sqsh'], 1, /no such file|ENOENT/i],
    ['a file that is not an image', ['stat', 'fixtures/make-tree.py'], 1, /superblock|magic|smaller than/i],
    ['a missing path', ['ls', 'fixtures/out/gzip.sqsh', '/nope/deeper'], 1, /\/nope: no such file or directory/],
    ['a path through a file', ['ls', 'fixtures/out/gzip.sqsh', '/dup-a/x'], 1, /not a directory/],
    ['cat of a directory', ['cat', 'fixtures/out/gzip.sqsh', '/links'], 1, /\/links: is a directory/],
    ['cat of a fifo', ['cat', 'fixtures/out/gzip.sqsh', '/special/fifo'], 1, /is a fifo, not a regular file/],
    ['a missing argument', ['cat', 'fixtures/out/gzip.sqsh'], 2, /usage: squashfs-r2 cat/],
    ['an unknown option', ['ls', '--bogus', 'fixtures/out/gzip.sqsh'], 2, /bogus/],
  ] as [string, string[], number, RegExp][])('%s', async (_label, args, code, pattern) => {
    const r = await runCli(args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('extract refuses a non-empty destination', async () => {
    const dest = join(work, 'not-empty');
    await mkdir(dest);
    await writeFile(join(dest, 'keep'), 'x');
    const r = await runCli(['extract', 'fixtures/out/gzip.sqsh', dest]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not empty/);
    expect(await readdir(dest)).toEqual(['keep']);
  });

  it('extract of an image whose directory entry is named ".." fails and writes nothing outside dest', async () => {
    const src = join(work, 'hostile-src');
    await mkdir(src);
    await writeFile(join(src, 'xx'), 'would escape');
    const image = join(work, 'hostile.sqsh');
    await execFileP('mksquashfs', [src, image, '-noappend', '-quiet', '-no-progress', '-noI', '-noD', '-noF', '-noX', '-no-xattrs']);
    // Rename the entry "xx" to ".." in the uncompressed directory table (the name is the last "xx").
    const bytes = await readFile(image);
    const at = bytes.lastIndexOf(Buffer.from('xx'));
    expect(at).toBeGreaterThan(0);
    bytes.write('..', at);
    await writeFile(image, bytes);
    const parent = join(work, 'hostile-parent');
    await mkdir(parent);
    const r = await runCli(['extract', image, join(parent, 'dest')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\.\./);
    expect(await readdir(parent)).toEqual(['dest']);
    expect(await readdir(join(parent, 'dest'))).toEqual([]);
  });
});

describe('remote images (s3:// through a local S3 server)', () => {
  it('ls -l, stat and cat give the same answers as for the local file', async () => {
    const { startS3Server } = await import('../../src/testing/s3-server.js');
    const server = await startS3Server({ buckets: ['images'] });
    try {
      const f = await fixture('zstd');
      await server.putObject('images', 'backups/zstd.sqsh', await readFile(f.path));
      const env = { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, AWS_REGION: server.region };
      const remote = ['s3://images/backups/zstd.sqsh', '--endpoint', server.endpoint];
      const pairs: [string[], string[]][] = [
        [['ls', '-l', ...remote, '/links'], ['ls', '-l', f.path, '/links']],
        [['stat', '--json', ...remote, '/xattrs/long-only'], ['stat', '--json', f.path, '/xattrs/long-only']],
        [['cat', ...remote, '/sizes/mixed-2M'], ['cat', f.path, '/sizes/mixed-2M']],
      ];
      for (const [r, l] of pairs) {
        const [a, b] = [await runCli(r, { env }), await runCli(l)];
        expect(a.code, a.stderr).toBe(0);
        expect(sha256(a.stdout), r.join(' ')).toBe(sha256(b.stdout));
      }
      // --stats prints the transport's and caches' counters once the command is done.
      const withStats = await runCli(['cat', '--stats', ...remote, '/sizes/mixed-2M'], { env });
      expect(withStats.code, withStats.stderr).toBe(0);
      const line = /^stats: (.*)$/m.exec(withStats.stderr.toString())?.[1];
      expect(line).toBeDefined();
      const stats = JSON.parse(line!);
      expect(stats.source.transport.requests).toBeGreaterThanOrEqual(2);
      expect(stats.source.transport.bytes).toBeGreaterThan(0);
      expect(stats.source.cache.misses).toBeGreaterThan(0);
      expect(stats.reader.dataMisses).toBeGreaterThan(0);

      const missing = await runCli(['ls', 's3://images/nope.sqsh', '--endpoint', server.endpoint], { env });
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/nope\.sqsh/);
      expect(missing.stderr).toMatch(/404|not found|NoSuchKey/i);
    } finally {
      await server.close();
    }
  });
});

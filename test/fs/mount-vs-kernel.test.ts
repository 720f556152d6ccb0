/**
 * Every fixture image mounted with our FUSE adapter (from the local file, and from the S3 test
 * server through openSource and the chunk cache) and walked like any directory, compared with the
 * kernel's own squashfs mount of the same image: type, mode, uid, gid, mtime, size (directories
 * too), nlink, rdev, link target, xattrs (trusted.* included), sha256 of every file, and st_ino.
 * Legacy lzma, which the kernel cannot mount, is compared with `unsquashfs -d` instead.
 *
 * The default run takes a subset that still covers every compressor and image feature;
 * FUSE_ALL_FIXTURES=1 takes every fixture.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mount } from '../../src/fs/index.js';
import { openSource } from '../../src/r2/open-source.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { type Fixture, ensureFixtures } from '../helpers/fixtures.js';
import { withOracleTree } from '../helpers/kernel-mount.js';
import { diffManifests, type Manifest, manifestFromTree } from '../helpers/manifest.js';
import { cleanupMountpoint, inodeNumbers, tempMountpoint } from './helpers.js';
import { readFile } from 'node:fs/promises';

/** Every compressor and every image feature, in as few images as that takes. */
const DEFAULT_SET = [
  'gzip', // xattrs incl. trusted.*, devices, fifo, socket, hard links, long symlinks, odd names
  'lzo',
  'xz-bcj-x86',
  'lz4-4k', // many small blocks
  'zstd-1m', // 1 MiB blocks
  'lzma', // legacy lzma: unsquashfs oracle
  'gzip-uncompressed', // stored blocks, no xattr compression
  'tar2sqfs-lzo-notail', // the other writer, no tail packing
];
/** Also through the S3 server (chunk cache + ranged GETs) in the default run. */
const DEFAULT_S3_SET = ['gzip', 'zstd-1m'];
const ALL = process.env.FUSE_ALL_FIXTURES === '1';

interface OracleView {
  kind: 'kernel' | 'unsquashfs';
  manifest: Manifest;
  inodes?: Map<string, number>;
}

const fixtures = await ensureFixtures();
const chosen = ALL ? fixtures : fixtures.filter((f) => DEFAULT_SET.includes(f.name));

async function fuseView(source: Parameters<typeof mount>[0], fixture: Fixture): Promise<{ manifest: Manifest; inodes: Map<string, number> }> {
  const dir = await tempMountpoint();
  try {
    const handle = await mount(source, dir);
    try {
      return { manifest: await manifestFromTree(dir), inodes: await inodeNumbers(dir) };
    } finally {
      await handle.unmount();
    }
  } catch (e) {
    throw new Error(`${fixture.name}: ${(e as Error).message}`, { cause: e });
  } finally {
    await cleanupMountpoint(dir);
  }
}

function expectSameView(oracle: OracleView, ours: { manifest: Manifest; inodes: Map<string, number> }): void {
  if (oracle.kind === 'kernel') {
    expect(diffManifests(oracle.manifest, ours.manifest, { dirSize: true })).toEqual([]);
    expect(Object.fromEntries(ours.inodes)).toEqual(Object.fromEntries(oracle.inodes ?? []));
  } else {
    // Extraction cannot show directory sizes or inode numbers; everything else must match.
    expect(diffManifests(oracle.manifest, ours.manifest)).toEqual([]);
  }
}

let server: S3TestServer;
beforeAll(async () => {
  server = await startS3Server({ buckets: ['images'] });
});
afterAll(async () => {
  await server?.close();
});

describe.each(chosen.map((f) => [f.name, f] as const))('%s', (_name, fixture) => {
  let oracle: OracleView;
  beforeAll(async () => {
    oracle = await withOracleTree(fixture, async (dir, kind) => ({
      kind,
      manifest: await manifestFromTree(dir),
      inodes: kind === 'kernel' ? await inodeNumbers(dir) : undefined,
    }));
  });

  it('mounted from the local file, matches the kernel mount', async () => {
    expectSameView(oracle, await fuseView(fixture.path, fixture));
  });

  it.runIf(ALL || DEFAULT_S3_SET.includes(fixture.name))('mounted from the S3 server, matches the kernel mount', async () => {
    const key = `fixtures/${fixture.name}.sqsh`;
    await server.putObject('images', key, await readFile(fixture.path));
    const source = await openSource(`s3://images/${key}`, {
      endpoint: server.endpoint,
      region: server.region,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      env: {},
    });
    expectSameView(oracle, await fuseView(source, fixture));
  });
});

/**
 * Every fixture image mounted with our FUSE adapter (from the local file with both engines, and from the S3 test
 * server through openSource and the chunk cache) and walked like any directory, compared with the
 * kernel's own squashfs mount of the same image: type, mode, uid, gid, mtime, size (directories
 * too), nlink, rdev, link target, xattrs (trusted.* included), sha256 of every file, and st_ino.
 * Legacy lzma, which the kernel cannot mount, is compared with `unsquashfs -d` instead.
 *
 * Every fixture, both ways (about 2.5 minutes: the tree walks read 2 entries at a time, see
 * test/helpers/manifest.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FuseEngine, mount } from '../../src/fs/index.js';
import { openSource } from '../../src/r2/open-source.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { type Fixture, ensureFixtures } from '../helpers/fixtures.js';
import { withOracleTree } from '../helpers/kernel-mount.js';
import { diffManifests, type Manifest, manifestFromTree } from '../helpers/manifest.js';
import { cleanupMountpoint, inodeNumbers, tempMountpoint } from './helpers.js';
import { readFile } from 'node:fs/promises';

interface OracleView {
  kind: 'kernel' | 'unsquashfs';
  manifest: Manifest;
  inodes?: Map<string, number>;
}

const fixtures = await ensureFixtures();

async function fuseView(
  source: Parameters<typeof mount>[0],
  fixture: Fixture,
  fuseEngine?: FuseEngine,
): Promise<{ manifest: Manifest; inodes: Map<string, number> }> {
  const dir = await tempMountpoint();
  try {
    const handle = await mount(source, dir, { fuseEngine });
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

describe.each(fixtures.map((f) => [f.name, f] as const))('%s', (_name, fixture) => {
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

  it('mounted from the local file through libfuse (fuse-native), matches the kernel mount', async () => {
    expectSameView(oracle, await fuseView(fixture.path, fixture, 'libfuse'));
  });

  it('mounted from the S3 server, matches the kernel mount', async () => {
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

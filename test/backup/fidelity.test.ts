import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackup } from '../../src/backup/create.js';
import { mountBackup, teardownRestore } from '../../src/backup/restore.js';
import { ROOT_XATTRS_FILE } from '../../src/backup/root-attrs.js';
import { makeEveryKindTree } from './every-kind-tree.js';
import { mountsUnder, startTestS3, type TestS3, tempRoot } from './helpers.js';
import { diffTrees, snapshotTree, type Tree } from './tree-compare.js';

/** The comparison must be able to fail: a copy differing in one attribute is caught. */
describe('tree comparison', () => {
  let root: string;
  let want: Tree;

  beforeAll(async () => {
    root = await tempRoot('cmp');
    await mkdir(join(root, 'a'));
    await makeEveryKindTree(join(root, 'a'));
    want = await snapshotTree(join(root, 'a'));
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a faithful copy (cp -a) compares equal, root included', async () => {
    execFileSync('cp', ['-a', join(root, 'a'), join(root, 'same')]);
    expect(diffTrees(want, await snapshotTree(join(root, 'same')))).toEqual([]);
    expect(want['.']).toMatchObject({ mode: '40750', uid: 1000, gid: 1000 });
    expect(want['.'].xattrs).toContain('user.root-note=');
    expect(want['modes/setuid'].mode).toBe('104755');
    expect(want['links/a'].sameInode).toBe('links/a,links/b,modes/a-elsewhere');
  });

  it.each([
    ['the root mode', (d: string) => chmod(d, 0o755), '. mode'],
    ['the root owner', (d: string) => chown(d, 0, 1000), '. uid'],
    ['the root mtime', (d: string) => utimes(d, new Date(), new Date()), '. mtimeSec'],
    ['a root xattr', (d: string) => execFileSync('setfattr', ['-x', 'user.root-note', d]), '. xattrs'],
    [
      'a trusted xattr',
      (d: string) => execFileSync('setfattr', ['-x', 'trusted.label', join(d, 'xattrs/trusted')]),
      'xattrs/trusted xattrs',
    ],
    ['a setuid bit', (d: string) => chmod(join(d, 'modes/setuid'), 0o755), 'modes/setuid mode'],
    ['content', (d: string) => writeFile(join(d, 'links/pair'), 'two nameZ\n'), 'links/pair sha256'],
    [
      'a sparse file',
      (d: string) => writeFile(join(d, 'sparse/holes.bin'), Buffer.alloc(9 * 1024 * 1024)),
      'sparse/holes.bin sha256',
    ],
    [
      'a device number',
      async (d: string) => {
        await rm(join(d, 'special/char'));
        execFileSync('mknod', ['-m', '0620', join(d, 'special/char'), 'c', '1', '5']);
      },
      'special/char rdev',
    ],
    [
      'a link target',
      async (d: string) => {
        await rm(join(d, 'links/dangling'));
        execFileSync('ln', ['-s', 'no/such/targeT', join(d, 'links/dangling')]);
      },
      'links/dangling target',
    ],
    [
      'a hard link',
      async (d: string) => {
        const content = await readFile(join(d, 'links/b'));
        await rm(join(d, 'links/b'));
        await writeFile(join(d, 'links/b'), content);
      },
      'links/a sameInode',
    ],
  ])('a copy differing in %s is caught', async (_, change, expected) => {
    const copy = join(root, `copy-${Math.random().toString(16).slice(2)}`);
    execFileSync('cp', ['-a', join(root, 'a'), copy]);
    await change(copy);
    const diff = diffTrees(want, await snapshotTree(copy));
    expect(diff.join('\n')).toContain(expected);
  });
});

describe('a restore reproduces the backed-up tree', () => {
  let s3: TestS3;
  let root: string;
  let source: string;
  let target: string;
  let stateDir: string;
  let want: Tree;
  let bucket: { bucket: string; endpoint: string };

  beforeAll(async () => {
    s3 = await startTestS3();
    bucket = { bucket: s3.bucket, endpoint: s3.endpoint };
    root = await tempRoot('fidelity');
    source = join(root, 'source');
    // Missing with its parent: mount-backup creates both, as the SDK's restore does.
    target = join(root, 'restored/here');
    stateDir = join(root, 'state');
    await mkdir(source);
    await makeEveryKindTree(source);
    want = await snapshotTree(source);
  });

  afterAll(async () => {
    await teardownRestore(target, { stateDir, discardWrites: true }).catch(() => undefined);
    expect(mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true, force: true });
    await s3?.close();
  });

  it('by stat, xattrs, content, link targets and hard-link groups, root included; restored again, a changed root is kept aside', async () => {
    const meta = await createBackup(source, { ...bucket, compression: 'lz4' });
    const warnings: string[] = [];
    const first = await mountBackup(meta.id, target, { ...bucket, stateDir, onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual([]);
    expect((await stat(join(root, 'restored'))).mode & 0o777).toBe(0o755);
    // The lower mount alone already matches (our FUSE serving the image) ...
    expect(diffTrees(want, await snapshotTree(first.record.lower))).toEqual([]);
    // ... and so does the overlay, whose root is the upper dir given the archive root's attributes.
    expect(diffTrees(want, await snapshotTree(target))).toEqual([]);
    expect(JSON.parse(await readFile(join(first.record.base, ROOT_XATTRS_FILE), 'utf8'))).toHaveLength(2);
    expect(await snapshotTree(first.record.upper).then((t) => Object.keys(t))).toEqual(['.']);

    // Reading everything wrote nothing: restoring again has nothing to keep.
    const again = await mountBackup(meta.id, target, { ...bucket, stateDir });
    expect(again.replaced.map((r) => [r.savedWrites, r.discardedWrites])).toEqual([[undefined, false]]);
    expect(diffTrees(want, await snapshotTree(target))).toEqual([]);

    // A wrong root is caught: changing it through the overlay makes the comparison fail. Such a
    // change alone (no entry written) is a write too: restoring again keeps it aside.
    await chmod(target, 0o755);
    expect(diffTrees(want, await snapshotTree(target))).toEqual(['. mode: want "40750", got "40755"']);
    const third = await mountBackup(meta.id, target, { ...bucket, stateDir });
    const saved = third.replaced[0].savedWrites!;
    expect(saved).toBeDefined();
    expect((await stat(saved)).mode & 0o7777).toBe(0o755);
    expect(diffTrees(want, await snapshotTree(target))).toEqual([]);

    await writeFile(join(target, 'modes/plain.txt'), 'changed\n');
    const down = await teardownRestore(target, { stateDir });
    expect(await readFile(join(down!.savedWrites!, 'modes/plain.txt'), 'utf8')).toBe('changed\n');
    expect(mountsUnder(root)).toEqual([]);
    // The dir mount-backup created stays, empty, as a plain mkdir -p would leave it.
    expect(existsSync(target)).toBe(true);
  });

  it("fuse-overlayfs's own xattrs on the archive root are not copied (an opaque root would hide the backup)", async () => {
    const own = join(root, 'own-xattrs');
    await mkdir(own);
    await writeFile(join(own, 'visible.txt'), 'still here\n');
    for (const [name, value] of [
      ['trusted.overlay.opaque', 'y'],
      ['user.fuseoverlayfs.opaque', 'y'],
      ['user.kept', 'yes'],
    ]) {
      execFileSync('setfattr', ['-n', name, '-v', value, own]);
    }
    const meta = await createBackup(own, { ...bucket, compression: 'gzip' });
    const dir = join(root, 'own-restored');
    const warnings: string[] = [];
    await mountBackup(meta.id, dir, { ...bucket, stateDir, onWarning: (w) => warnings.push(w) });
    try {
      expect(await readFile(join(dir, 'visible.txt'), 'utf8')).toBe('still here\n');
      expect(execFileSync('getfattr', ['--only-values', '-n', 'user.kept', dir], { encoding: 'utf8' })).toBe('yes');
      expect(warnings).toEqual([
        "xattrs of fuse-overlayfs's own on the archive root not restored: trusted.overlay.opaque, user.fuseoverlayfs.opaque",
      ]);
    } finally {
      await teardownRestore(dir, { stateDir });
    }
  });
});

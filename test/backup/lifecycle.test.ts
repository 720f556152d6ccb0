import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackup } from '../../src/backup/create.js';
import { listRestores } from '../../src/backup/list.js';
import { isOurProcess } from '../../src/backup/lower.js';
import { isMountPoint, waitFor } from '../../src/backup/mounts.js';
import { fetchMeta, headObject } from '../../src/backup/remote.js';
import { mountBackup, teardownRestore } from '../../src/backup/restore.js';
import { createS3Client } from '../../src/backup/s3-client.js';
import { ROOT_XATTRS_FILE } from '../../src/backup/root-attrs.js';
import { readRecords } from '../../src/backup/state.js';
import { unmountRestoredDir } from '../../src/backup/unmount-restore.js';
import { makeSampleTree, mountsUnder, startTestS3, type TestS3, tempRoot } from './helpers.js';
import { manifest } from './manifest.js';

describe.each(['gzip', 'lz4', 'zstd'] as const)(
  'backup lifecycle (%s): create → mount-backup → write → restore again → unmount',
  (compression) => {
    let s3: TestS3;
    let root: string;
    let sample: string;
    let target: string;
    let stateDir: string;

    beforeAll(async () => {
      s3 = await startTestS3();
      root = await tempRoot('life');
      sample = join(root, 'sample');
      target = join(root, 'target');
      stateDir = join(root, 'state');
      await mkdir(sample);
      await mkdir(target);
      await makeSampleTree(sample);
    });

    afterAll(async () => {
      await teardownRestore(target, { stateDir, discardWrites: true }).catch(() => undefined);
      expect(mountsUnder(root)).toEqual([]);
      await rm(root, { recursive: true, force: true });
      await s3?.close();
    });

    it('restores a backup whose every file equals the source, writes go to upper, restore again resets, unmount leaves nothing', async () => {
      const bucket = { bucket: s3.bucket, endpoint: s3.endpoint };
      const progress: number[] = [];
      const meta = await createBackup(sample, {
        ...bucket,
        compression,
        excludes: ['node_modules', '*.log'],
        name: 'life',
        onProgress: (l) => progress.push(l),
      });
      expect(meta.name).toBe('life');
      expect(meta.dir).toBe(sample);
      expect(progress.at(-1)).toBe(meta.sizeBytes);
      const client = await createS3Client(bucket);
      const before = await headObject(client, bucket, `backups/${meta.id}/data.sqsh`);
      const stored = await fetchMeta(client, bucket, 'backups', meta.id);
      expect(stored).toEqual(meta);
      expect(Object.keys(stored).sort()).toEqual(['createdAt', 'dir', 'id', 'name', 'sizeBytes', 'ttl']);

      const first = await mountBackup(meta.id, target, { ...bucket, stateDir });
      expect(isMountPoint(target)).toBe(true);
      expect(isMountPoint(first.record.lower)).toBe(true);

      const want = await manifest(sample);
      delete want.node_modules;
      delete want['node_modules/pkg'];
      delete want['node_modules/pkg/index.js'];
      delete want['debug.log'];
      // Hard links survive both layers: the lower mount serves the image's inode numbers (use_ino).
      expect(await manifest(first.record.lower)).toEqual(want);
      expect(await manifest(target)).toEqual(want);
      // nothing was written by reading
      expect(await readdir(first.record.upper)).toEqual([]);
      // The usual backup: no xattrs on its root, so the lower process left no file for them.
      expect(existsSync(join(first.record.base, ROOT_XATTRS_FILE))).toBe(false);

      await writeFile(join(target, 'new.txt'), 'written after restore\n');
      await unlink(join(target, 'empty.txt'));
      await rename(join(target, 'src/main.ts'), join(target, 'src/renamed.ts'));
      await chmod(join(target, 'run.sh'), 0o700);
      expect(await readFile(join(target, 'new.txt'), 'utf8')).toBe('written after restore\n');
      expect(existsSync(join(first.record.upper, 'new.txt'))).toBe(true);
      expect((await headObject(client, bucket, `backups/${meta.id}/data.sqsh`)).etag).toBe(before.etag);

      const second = await mountBackup(meta.id, target, { ...bucket, stateDir });
      expect(second.replaced).toHaveLength(1);
      const saved = second.replaced[0].savedWrites;
      expect(saved).toBeDefined();
      expect(saved!.startsWith(join(stateDir, 'saved-writes'))).toBe(true);
      expect(await readFile(join(saved!, 'new.txt'), 'utf8')).toBe('written after restore\n');
      expect(isMountPoint(first.record.lower)).toBe(false);
      expect(existsSync(first.record.base)).toBe(false);
      expect(await manifest(target)).toEqual(want);

      await writeFile(join(target, 'last.txt'), 'kept on unmount\n');
      const lines: string[] = [];
      expect(await unmountRestoredDir(target, { stateDir, print: (l) => lines.push(l) })).toBe(true);
      const kept = /writes kept in (\S+)/.exec(lines.join('\n'))?.[1];
      expect(await readFile(join(kept!, 'last.txt'), 'utf8')).toBe('kept on unmount\n');
      expect(lines.at(-1)).toBe(`restore of backup ${meta.id} on ${target} removed`);
      expect(mountsUnder(root)).toEqual([]);
      expect(await readRecords(stateDir)).toEqual([]);
      // no process left
      expect(isOurProcess(second.record.lowerPid!, second.record.lower)).toBe(false);
      expect(isOurProcess(first.record.lowerPid!, first.record.lower)).toBe(false);
      expect(await teardownRestore(target, { stateDir })).toBeUndefined();
      expect(await unmountRestoredDir(target, { stateDir })).toBe(false);
      client.destroy();
    });
  },
);

describe('teardown in hard cases', () => {
  let s3: TestS3;
  let root: string;
  let target: string;
  let stateDir: string;
  let id: string;
  let bucket: { bucket: string; endpoint: string };

  beforeAll(async () => {
    s3 = await startTestS3();
    bucket = { bucket: s3.bucket, endpoint: s3.endpoint };
    root = await tempRoot('hard');
    target = join(root, 'target');
    stateDir = join(root, 'state');
    await mkdir(target);
    await mkdir(join(root, 'sample'));
    await makeSampleTree(join(root, 'sample'));
    id = (await createBackup(join(root, 'sample'), { ...bucket, compression: 'gzip' })).id;
  });

  afterAll(async () => {
    await teardownRestore(target, { stateDir, discardWrites: true }).catch(() => undefined);
    expect(mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true, force: true });
    await s3?.close();
  });

  it('restoring again while a file is open in the old restore: lazy unmount, the open file stays readable', async () => {
    const first = await mountBackup(id, target, { ...bucket, stateDir });
    const held = await open(join(target, 'src/lib/blob.bin'), 'r');
    try {
      const second = await mountBackup(id, target, { ...bucket, stateDir, discardWrites: true });
      expect(second.replaced[0].lazyUnmounts).toEqual([target]);
      // The old lower stays until the detached overlay stops using it; it is no longer a restore of target.
      expect(isMountPoint(first.record.lower)).toBe(true);
      expect((await listRestores(stateDir)).map((r) => r.health).sort()).toEqual(['active', 'detached']);
      const buf = Buffer.alloc(4096);
      const { bytesRead } = await held.read(buf, 0, 4096, 100_000);
      expect(bytesRead).toBe(4096);
      expect(buf[0]).toBe((100_000 * 7919) % 251);
      expect(await readFile(join(target, 'README.md'), 'utf8')).toContain('hello from the backup');
    } finally {
      await held.close();
    }
    // Once the file is closed, the next run sweeps the detached restore away.
    await waitFor(async () => {
      await teardownRestore(target, { stateDir });
      return mountsUnder(root).length === 0;
    }, 10_000);
    expect(mountsUnder(root)).toEqual([]);
    expect(await readRecords(stateDir)).toEqual([]);
    expect(isOurProcess(first.record.lowerPid!, first.record.lower)).toBe(false);
  });

  it('other users can read the restored dir (fuse-overlayfs run by root allows other users)', async () => {
    await chmod(root, 0o755);
    await mountBackup(id, target, { ...bucket, stateDir });
    const asNobody = execFileSync('su', ['nobody', '-s', '/bin/sh', '-c', `cat ${join(target, 'README.md')}`], {
      encoding: 'utf8',
    });
    expect(asNobody).toBe(await readFile(join(root, 'sample/README.md'), 'utf8'));
    // ...but not the private state dir behind it
    expect(() => execFileSync('su', ['nobody', '-s', '/bin/sh', '-c', `ls ${stateDir}`], { stdio: 'pipe' })).toThrow();
    await teardownRestore(target, { stateDir });
    expect(mountsUnder(root)).toEqual([]);
  });

  it('a crashed lower process: list says broken, unmount still cleans up', async () => {
    const r = await mountBackup(id, target, { ...bucket, stateDir });
    await writeFile(join(target, 'after-crash.txt'), 'kept\n');
    process.kill(r.record.lowerPid!, 'SIGKILL');
    await waitFor(() => !isOurProcess(r.record.lowerPid!, r.record.lower), 5_000);
    const [status] = await listRestores(stateDir);
    expect(status.health).toBe('broken');
    expect(status.lowerAlive).toBe(false);
    const down = await teardownRestore(target, { stateDir });
    expect(down?.savedWrites).toBeDefined();
    expect(await readFile(join(down!.savedWrites!, 'after-crash.txt'), 'utf8')).toBe('kept\n');
    expect(mountsUnder(root)).toEqual([]);
    expect(await readRecords(stateDir)).toEqual([]);
  });
});

import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackup } from '../../src/backup/create.js';
import { BackupError, BackupInputError } from '../../src/backup/layout.js';
import { isMountPoint } from '../../src/backup/mounts.js';
import { mountBackup, teardownRestore } from '../../src/backup/restore.js';
import { createS3Client } from '../../src/backup/s3-client.js';
import { readRecords } from '../../src/backup/state.js';
import { makeSampleTree, mountsUnder, startTestS3, type TestS3, tempRoot } from './helpers.js';

/** Each failure: a clear error, nothing mounted, no restore recorded, no restore dir left behind. */
describe('mount-backup failures leave nothing behind', () => {
  let s3: TestS3;
  let root: string;
  let target: string;
  let stateDir: string;
  let id: string;
  let bucket: { bucket: string; endpoint: string };

  beforeAll(async () => {
    // R2 mode: SigV4 is verified, so a wrong secret is refused like R2 would.
    s3 = await startTestS3('r2');
    bucket = { bucket: s3.bucket, endpoint: s3.endpoint };
    root = await tempRoot('err');
    target = join(root, 'target');
    stateDir = join(root, 'state');
    const sample = join(root, 'sample');
    await mkdir(target);
    await mkdir(sample);
    await makeSampleTree(sample);
    // gzip: the compressor every reader build has (the lifecycle test covers lz4 and zstd).
    id = (await createBackup(sample, { ...bucket, ttl: 3600, compression: 'gzip' })).id;
  });

  afterAll(async () => {
    await teardownRestore(target, { stateDir, discardWrites: true }).catch(() => undefined);
    expect(mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true, force: true });
    await s3?.close();
  });

  async function expectNothingLeft(): Promise<void> {
    expect(mountsUnder(root)).toEqual([]);
    expect(await readRecords(stateDir)).toEqual([]);
    const left = (await readdir(stateDir).catch(() => [] as string[])).filter(
      (n) => n !== 'saved-writes' && n !== 'locks',
    );
    expect(await readdir(join(stateDir, 'locks')).catch(() => [])).toEqual([]);
    expect(left).toEqual([]);
  }

  const restore = (backupId: string, dir = target, extra: Record<string, unknown> = {}) =>
    mountBackup(backupId, dir, { ...bucket, stateDir, ...extra });

  it('bad id: refused before any request', async () => {
    const before = s3.server.requests.length;
    await expect(restore('0b5e3f0c-6d1a-4c53-9a55-3f0e6c1d2b7')).rejects.toThrow(/invalid backup id/);
    expect(s3.server.requests.length).toBe(before);
    await expect(
      mountBackup('not-a-uuid', target, { bucket: 'b-test', endpoint: 'http://127.0.0.1:1', stateDir }),
    ).rejects.toThrow(BackupInputError);
    await expect(
      mountBackup('../etc/passwd', target, { bucket: 'b-test', endpoint: 'http://127.0.0.1:1', stateDir }),
    ).rejects.toThrow(/invalid backup id/);
    await expectNothingLeft();
  });

  it('missing backup (also onto a missing dir: the backup is what is reported, no dir is created)', async () => {
    await expect(restore('00000000-0000-4000-8000-000000000000')).rejects.toThrow(
      /backup 00000000-0000-4000-8000-000000000000 not found/,
    );
    await expect(restore('00000000-0000-4000-8000-000000000000', join(root, 'absent/dir'))).rejects.toThrow(
      /backup 00000000-0000-4000-8000-000000000000 not found/,
    );
    expect(existsSync(join(root, 'absent'))).toBe(false);
    await expect(restore('not-a-uuid', join(root, 'absent/dir'))).rejects.toThrow(/invalid backup id/);
    expect(existsSync(join(root, 'absent'))).toBe(false);
    await expectNothingLeft();
  });

  it('expired backup says when it expired', async () => {
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    const old = '11111111-1111-4111-8111-111111111111';
    const client = await createS3Client(bucket);
    const createdAt = '2020-01-01T00:00:00.000Z';
    await client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `backups/${old}/meta.json`,
        Body: JSON.stringify({ id: old, dir: '/workspace', name: null, sizeBytes: 1, ttl: 60, createdAt }),
      }),
    );
    // Within the 60 s margin counts as expired too.
    const soon = '22222222-2222-4222-8222-222222222222';
    await client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `backups/${soon}/meta.json`,
        Body: JSON.stringify({
          id: soon,
          dir: '/workspace',
          name: null,
          sizeBytes: 1,
          ttl: 30,
          createdAt: new Date().toISOString(),
        }),
      }),
    );
    client.destroy();
    await expect(restore(old)).rejects.toThrow(/expired at 2020-01-01T00:01:00.000Z/);
    await expect(restore(soon)).rejects.toThrow(/within the 60 s safety margin/);
    // Onto a missing dir: still the expiry is reported, and the dir is not created.
    await expect(restore(old, join(root, 'absent/dir'))).rejects.toThrow(/expired at 2020-01-01T00:01:00.000Z/);
    expect(existsSync(join(root, 'absent'))).toBe(false);
    await expectNothingLeft();
  });

  it('missing bucket', async () => {
    await expect(
      mountBackup(id, target, { bucket: 'no-such-bucket', endpoint: s3.endpoint, stateDir }),
    ).rejects.toThrow(/bucket "no-such-bucket" does not exist/);
    await expectNothingLeft();
  });

  it.each([
    ['unknown key', 'WRONGKEY', /access denied \(InvalidAccessKeyId\)/],
    ['wrong secret', 'S3RVER', /access denied \(SignatureDoesNotMatch\)/],
  ])('wrong credentials (%s): access denied, and the secret is not in the message', async (_, key, expected) => {
    const saved = { key: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = key;
    process.env.AWS_SECRET_ACCESS_KEY = 'very-secret-value-1234';
    try {
      const err = await restore(id).catch((e: Error) => e);
      expect(err).toBeInstanceOf(BackupError);
      expect((err as Error).message).toMatch(expected);
      expect((err as Error).message).not.toContain('very-secret-value-1234');
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.key;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
    await expectNothingLeft();
  });

  it('a missing target dir is created with its parents (0755, like mkdir -p), as the SDK restore does', async () => {
    const dir = join(root, 'new/a/b');
    const r = await restore(id, dir);
    expect(r.record.dir).toBe(dir);
    expect(isMountPoint(dir)).toBe(true);
    expect(await readFile(join(dir, 'README.md'), 'utf8')).toContain('hello from the backup');
    await teardownRestore(dir, { stateDir });
    for (const d of ['new', 'new/a', 'new/a/b']) expect((await stat(join(root, d))).mode & 0o7777).toBe(0o755);
    await rm(join(root, 'new'), { recursive: true });
    await expectNothingLeft();
  });

  it('a target that is not a directory is refused before any request', async () => {
    await writeFile(join(root, 'a-file'), 'x\n');
    await symlink('a-file', join(root, 'link-to-file'));
    await symlink('no/such/dir', join(root, 'dangling'));
    const before = s3.server.requests.length;
    const cases: [string, RegExp][] = [
      ['a-file', /target .*a-file is a regular file, not a directory/],
      ['link-to-file', /target .*link-to-file is a regular file, not a directory/],
      ['dangling', /target .*dangling is a symlink to a missing path, not a directory/],
      ['a-file/sub/dir', /a-file \(a parent of target .*a-file\/sub\/dir\) is a regular file/],
    ];
    for (const [name, expected] of cases) {
      const err = await restore(id, join(root, name)).catch((e: Error) => e);
      expect(err).toBeInstanceOf(BackupInputError);
      expect((err as Error).message).toMatch(expected);
    }
    await expect(restore(id, '/dev/null')).rejects.toThrow(/target \/dev\/null is a device, not a directory/);
    expect(s3.server.requests.length).toBe(before);
    await Promise.all(['a-file', 'link-to-file', 'dangling'].map((n) => rm(join(root, n))));
    await expectNothingLeft();
  });

  it('a target in the state dir is refused, also when reached through a symlink', async () => {
    await mkdir(stateDir, { recursive: true });
    await symlink(stateDir, join(root, 'state-link'));
    for (const dir of [stateDir, join(stateDir, 'x'), join(root, 'state-link/y'), root]) {
      await expect(restore(id, dir)).rejects.toThrow(/must not contain each other/);
    }
    expect(existsSync(join(stateDir, 'x'))).toBe(false);
    expect(existsSync(join(stateDir, 'y'))).toBe(false);
    await rm(join(root, 'state-link'));
    await expectNothingLeft();
  });

  it('fuse-overlayfs absent from PATH: refused before mounting anything', async () => {
    const savedPath = process.env.PATH;
    process.env.PATH = join(root, 'empty-bin');
    try {
      await expect(restore(id)).rejects.toThrow(/fuse-overlayfs not found on PATH/);
    } finally {
      process.env.PATH = savedPath;
    }
    await expectNothingLeft();
  });

  it('fuse-overlayfs failing after the lower mount: the lower mount is undone', async () => {
    const bin = join(root, 'fake-bin');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'fuse-overlayfs'), '#!/bin/sh\necho "fuse-overlayfs: simulated failure" >&2\nexit 1\n');
    await chmod(join(bin, 'fuse-overlayfs'), 0o755);
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath}`;
    try {
      await expect(restore(id)).rejects.toThrow(/simulated failure.*restore undone, nothing left mounted/);
    } finally {
      process.env.PATH = savedPath;
    }
    await expectNothingLeft();
  });

  it('a lower mount that fails (missing archive) is reported and undone', async () => {
    const { DeleteObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
    const noData = '33333333-3333-4333-8333-333333333333';
    const client = await createS3Client(bucket);
    await client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `backups/${noData}/meta.json`,
        Body: JSON.stringify({
          id: noData,
          dir: '/workspace',
          name: null,
          sizeBytes: 1,
          ttl: 3600,
          createdAt: new Date().toISOString(),
        }),
      }),
    );
    await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `backups/${noData}/data.sqsh` }));
    client.destroy();
    await expect(restore(noData)).rejects.toThrow(/lower mount of s3:\/\/.*data.sqsh failed/);
    // A dir created for the restore goes again with it (an existing parent stays).
    await mkdir(join(root, 'kept'));
    await expect(restore(noData, join(root, 'kept/made/here'))).rejects.toThrow(/lower mount .* failed/);
    expect(await readdir(join(root, 'kept'))).toEqual([]);
    await rm(join(root, 'kept'), { recursive: true });
    await expectNothingLeft();
  });

  it('two restores of one dir at once: the second is refused, never interleaved', async () => {
    const results = await Promise.allSettled([restore(id), restore(id)]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(ok).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(String(refused[0].reason)).toMatch(/another restore or unmount of .* is in progress/);
    expect(mountsUnder(root)).toHaveLength(2);
    await teardownRestore(target, { stateDir });
    await expectNothingLeft();
  });

  it('only the state dir and the target are touched; the state dir is private', async () => {
    const before = (await readdir(root)).sort();
    const r = await restore(id);
    expect((await readdir(root)).sort()).toEqual([...new Set([...before, 'state'])].sort());
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect(r.record.base.startsWith(`${stateDir}/`)).toBe(true);
    await teardownRestore(target, { stateDir });
    expect((await readdir(root)).sort()).toEqual([...new Set([...before, 'state'])].sort());
    await expectNothingLeft();
  });
});

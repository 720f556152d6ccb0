import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../src/backup/mounts.js';
import { teardownRestore } from '../../src/backup/restore.js';
import { makeSampleTree, mountsUnder, startTestS3, type TestS3, tempRoot } from './helpers.js';

const bin = (name: string) => fileURLToPath(new URL(`../../bin/${name}`, import.meta.url));

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      bin(cmd),
      args,
      { env: { ...process.env, ...env }, timeout: 90_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** The commands as users run them (bin/ → the build in dist/). */
describe('backup CLI: create-backup, mount-backup, list, demo', () => {
  let s3: TestS3;
  let root: string;
  let sample: string;
  let target: string;
  let stateDir: string;
  let bucketArgs: string[];

  beforeAll(async () => {
    s3 = await startTestS3();
    root = await tempRoot('cli');
    sample = join(root, 'sample');
    target = join(root, 'target');
    stateDir = join(root, 'state');
    await mkdir(sample);
    await mkdir(target);
    await makeSampleTree(sample);
    bucketArgs = ['--bucket', s3.bucket, '--endpoint', s3.endpoint];
  });

  afterAll(async () => {
    await teardownRestore(target, { stateDir, discardWrites: true }).catch(() => undefined);
    expect(mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true, force: true });
    await s3?.close();
  });

  it('create-backup prints only the id; mount-backup restores; again saves the writes aside; list shows it', async () => {
    const created = await run('squashfs-r2', [
      'create-backup',
      ...bucketArgs,
      '--compression',
      'gzip',
      '--exclude',
      'node_modules',
      '--name',
      'cli',
      sample,
    ]);
    expect(created.stderr).toMatch(/uploaded .* \(100 %\)/);
    expect(created.stderr).not.toMatch(/NodeVersionSupportWarning/);
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    const first = await run('mount-backup', [
      ...bucketArgs,
      '--state-dir',
      stateDir,
      '--cache-size',
      '16M',
      id,
      target,
    ]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`restored backup ${id} \\("cli"\\) on ${target} in \\d+ ms`));
    expect(await readFile(join(target, 'README.md'), 'utf8')).toBe(await readFile(join(sample, 'README.md'), 'utf8'));
    expect(existsSync(join(target, 'node_modules'))).toBe(false);

    const listed = await run('squashfs-r2', ['list', '--state-dir', stateDir, '--json']);
    expect(listed.code).toBe(0);
    const restores = JSON.parse(listed.stdout) as Array<{
      backupId: string;
      dir: string;
      health: string;
      stats?: { source?: unknown };
    }>;
    expect(restores).toHaveLength(1);
    expect(restores[0]).toMatchObject({ backupId: id, dir: target, health: 'active' });
    expect(restores[0].stats?.source).toBeDefined();
    const text = await run('squashfs-r2', ['list', '--state-dir', stateDir]);
    expect(text.stdout).toContain(`backup ${id} "cli"`);

    await writeFile(join(target, 'mine.txt'), 'keep me\n');
    const second = await run('squashfs-r2', ['mount-backup', ...bucketArgs, '--state-dir', stateDir, id, target]);
    expect(second.code).toBe(0);
    const saved = /saved in (\S+)/.exec(second.stderr)?.[1];
    expect(saved).toBeDefined();
    expect(await readFile(join(saved!, 'mine.txt'), 'utf8')).toBe('keep me\n');
    expect(existsSync(join(target, 'mine.txt'))).toBe(false);
    expect(isMountPoint(target)).toBe(true);

    await writeFile(join(target, 'scratch.txt'), 'throw me away\n');
    const third = await run('mount-backup', [
      ...bucketArgs,
      '--state-dir',
      stateDir,
      '--discard-writes',
      '-q',
      id,
      target,
    ]);
    expect(third.code).toBe(0);
    expect(third.stderr).toBe('');
    expect(existsSync(join(target, 'scratch.txt'))).toBe(false);

    await writeFile(join(target, 'last.txt'), 'written before unmount\n');
    const down = await run('squashfs-r2', ['unmount', '--state-dir', stateDir, target]);
    expect(down.code).toBe(0);
    expect(down.stderr).toContain(`restore of backup ${id} on ${target} removed`);
    const kept = /writes kept in (\S+)/.exec(down.stderr)?.[1];
    expect(kept).toBeDefined();
    expect(await readFile(join(kept!, 'last.txt'), 'utf8')).toBe('written before unmount\n');
    expect(mountsUnder(root)).toEqual([]);
    expect(isMountPoint(target)).toBe(false);
    expect((await run('squashfs-r2', ['list', '--state-dir', stateDir])).stdout).toBe('no active restores\n');
  });

  it('usage errors exit 2 with a clear message', async () => {
    const badId = await run('mount-backup', [...bucketArgs, '--state-dir', stateDir, 'xyz', target]);
    expect(badId.code).toBe(2);
    expect(badId.stderr).toMatch(/invalid backup id "xyz"/);
    const badComp = await run('squashfs-r2', ['create-backup', ...bucketArgs, '--compression', 'xz', sample]);
    expect(badComp.code).toBe(2);
    expect(badComp.stderr).toMatch(/unknown compression "xz"/);
    const noBucket = await run('squashfs-r2', ['create-backup', sample], { SQUASHFS_R2_BUCKET: '', R2_BUCKET: '' });
    expect(noBucket.code).toBe(2);
    expect(noBucket.stderr).toMatch(/no bucket/);
    const badTtl = await run('squashfs-r2', ['create-backup', ...bucketArgs, '--ttl', '-5', sample]);
    expect(badTtl.code).toBe(2);
    await writeFile(join(root, 'a-file'), 'not a dir\n');
    const fileTarget = await run('mount-backup', [
      ...bucketArgs,
      '--state-dir',
      stateDir,
      '00000000-0000-4000-8000-000000000000',
      join(root, 'a-file'),
    ]);
    expect(fileTarget.code).toBe(2);
    expect(fileTarget.stderr).toMatch(/target .*a-file is a regular file, not a directory/);
    expect(mountsUnder(root)).toEqual([]);
  });

  it('demo runs end to end and cleans up', async () => {
    const demo = await run('squashfs-r2', ['demo']);
    expect(demo.stderr).toBe('');
    expect(demo.code).toBe(0);
    for (const step of [
      'create-backup',
      'mount-backup',
      'files identical',
      'landed in the upper dir',
      'is unchanged',
      'notes.txt is gone',
      'everything cleaned up',
    ]) {
      expect(demo.stdout).toContain(step);
    }
    const work = /data in (\/\S+)\/s3-data/.exec(demo.stdout)?.[1];
    expect(work).toBeDefined();
    expect(existsSync(work!)).toBe(false);
    expect(mountsUnder(work!)).toEqual([]);
  });
});

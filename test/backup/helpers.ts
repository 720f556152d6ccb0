import { execFileSync } from 'node:child_process';
import { chmod, link, mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readMounts } from '../../src/backup/mounts.js';
import { type S3ServerMode, type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';

/** A bucket on the project's S3 test server (s3rver on 127.0.0.1:0; 'r2' mode verifies SigV4 like R2). */
export interface TestS3 {
  endpoint: string;
  bucket: string;
  dataDir: string;
  server: S3TestServer;
  close(): Promise<void>;
}

export async function startTestS3(mode: S3ServerMode = 's3rver', bucket = 'backups-test'): Promise<TestS3> {
  const server = await startS3Server({ mode, buckets: [bucket] });
  process.env.AWS_ACCESS_KEY_ID = server.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  return { endpoint: server.endpoint, bucket, dataDir: server.directory, server, close: () => server.close() };
}

/** A small tree with what a sandbox dir holds: text, binary, empty, nested dirs, symlinks, a hard link, odd modes. */
export async function makeSampleTree(root: string): Promise<void> {
  await mkdir(join(root, 'src/lib'), { recursive: true });
  await mkdir(join(root, 'empty-dir'));
  await writeFile(join(root, 'README.md'), '# sample\nhello from the backup\n');
  await writeFile(join(root, 'src/main.ts'), 'export const answer = 42;\n'.repeat(200));
  await writeFile(
    join(root, 'src/lib/blob.bin'),
    Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251)),
  );
  await writeFile(join(root, 'empty.txt'), '');
  await writeFile(join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'run.sh'), 0o755);
  await writeFile(join(root, 'secret.txt'), 'private\n');
  await chmod(join(root, 'secret.txt'), 0o600);
  await symlink('src/main.ts', join(root, 'link-to-main'));
  await symlink('/nonexistent/target', join(root, 'dangling'));
  await link(join(root, 'README.md'), join(root, 'README.hardlink'));
  await mkdir(join(root, 'node_modules/pkg'), { recursive: true });
  await writeFile(join(root, 'node_modules/pkg/index.js'), 'module.exports = 1;\n');
  await writeFile(join(root, 'debug.log'), 'log line\n');
  try {
    execFileSync('setfattr', ['-n', 'user.origin', '-v', 'backup-test', join(root, 'README.md')]);
  } catch {
    // xattrs unsupported on this tmpfs: the manifest then simply has none
  }
}

/** Absolute mount points under `root` (from /proc/self/mountinfo). */
export function mountsUnder(root: string): string[] {
  return readMounts()
    .map((m) => m.mountPoint)
    .filter((p) => p === root || p.startsWith(`${root}/`));
}

export async function tempRoot(tag: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `backup-${tag}-`));
}

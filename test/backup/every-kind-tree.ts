import { execFileSync } from 'node:child_process';
import { chmod, chown, lchown, link, lutimes, mkdir, open, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A date SquashFS can store (u32 seconds) and no test run can produce by accident. */
const OLD = new Date('2001-02-03T04:05:06Z');

function setfattr(path: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, path]);
}

/**
 * Builds under `root` (an empty dir) a tree with every kind of entry a backup has to keep: odd modes
 * (0750, 4755, 2755, a 1777 sticky dir, a 2755 setgid dir), owners other than root, old mtimes,
 * user.* and trusted.* xattrs (binary, empty, long values), hard-link groups, symlinks (relative,
 * absolute, to a dir, dangling), char and block devices, fifos, empty dirs, sparse files; and the
 * root itself owned 1000:1000, mode 0750, an old mtime and xattrs. Needs root.
 */
export async function makeEveryKindTree(root: string): Promise<void> {
  const p = (rel: string) => join(root, rel);
  const file = async (rel: string, content: string | Buffer, mode: number, uid = 0, gid = 0) => {
    await writeFile(p(rel), content);
    await chown(p(rel), uid, gid); // before chmod: chown clears setuid/setgid
    await chmod(p(rel), mode);
  };
  const dir = async (rel: string, mode: number, uid = 0, gid = 0) => {
    await mkdir(p(rel));
    await chown(p(rel), uid, gid);
    await chmod(p(rel), mode);
  };

  await dir('modes', 0o755);
  await file('modes/plain.txt', 'plain\n', 0o644);
  await file('modes/group-only.sh', '#!/bin/sh\necho group\n', 0o750, 1000, 1000);
  await file('modes/setuid', '#!/bin/sh\n', 0o4755);
  await file('modes/setgid', '#!/bin/sh\n', 0o2755, 0, 1000);
  await file('modes/none', 'no permissions\n', 0o000, 1234, 5678);
  await dir('modes/sticky', 0o1777);
  await file('modes/sticky/mine', 'in a sticky dir\n', 0o600, 1000, 1000);
  await dir('modes/setgid-dir', 0o2775, 0, 1000);
  await dir('modes/private-dir', 0o700, 1000, 1000);

  await dir('xattrs', 0o755, 1000, 1000);
  await file('xattrs/user', 'x\n', 0o644, 1000, 1000);
  setfattr(p('xattrs/user'), 'user.origin', 'backup-test');
  setfattr(p('xattrs/user'), 'user.binary', '0x00ff10ee');
  setfattr(p('xattrs/user'), 'user.empty', '');
  setfattr(p('xattrs/user'), 'user.long', `0x${Buffer.alloc(3000, 0x5a).toString('hex')}`);
  await file('xattrs/trusted', 't\n', 0o640);
  setfattr(p('xattrs/trusted'), 'trusted.label', 'only-root-sees-this');
  setfattr(p('xattrs'), 'user.on-a-dir', 'dir-value');

  await dir('links', 0o755);
  await file('links/a', 'three names, one inode\n', 0o644, 1000, 1000);
  await link(p('links/a'), p('links/b'));
  await link(p('links/a'), p('modes/a-elsewhere'));
  await file('links/pair', 'two names\n', 0o600);
  await link(p('links/pair'), p('links/pair2'));
  await symlink('a', p('links/rel'));
  await symlink('/etc/hostname', p('links/abs'));
  await symlink('../modes', p('links/to-dir'));
  await symlink('no/such/target', p('links/dangling'));
  await lchown(p('links/dangling'), 1000, 1000);

  await dir('special', 0o755);
  execFileSync('mknod', ['-m', '0620', p('special/char'), 'c', '1', '3']);
  execFileSync('mknod', ['-m', '0660', p('special/block'), 'b', '7', '200']);
  await chown(p('special/block'), 0, 6);
  execFileSync('mkfifo', ['-m', '0640', p('special/fifo')]);
  await chown(p('special/fifo'), 1000, 1000);

  await dir('empty', 0o755);
  await dir('empty/nested', 0o711, 1000, 0);
  await file('empty-file', '', 0o644);

  await dir('sparse', 0o755);
  // Data, a 5 MiB hole, data, a trailing hole; and a file that is one hole.
  const sparse = await open(p('sparse/holes.bin'), 'w');
  await sparse.write(Buffer.alloc(70_000, 0x41), 0, 70_000, 0);
  await sparse.write(Buffer.alloc(4096, 0x42), 0, 4096, 5 * 1024 * 1024);
  await sparse.truncate(9 * 1024 * 1024);
  await sparse.close();
  const hole = await open(p('sparse/all-hole.bin'), 'w');
  await hole.truncate(3 * 1024 * 1024);
  await hole.close();
  await file('big.bin', Buffer.from(Array.from({ length: 400_000 }, (_, i) => (i * 31 + (i >> 9)) % 256)), 0o644);

  setfattr(root, 'user.root-note', 'the backed-up dir itself');
  setfattr(root, 'trusted.root-label', 'root-only');
  await chown(root, 1000, 1000);
  await chmod(root, 0o750);

  // Times last, children before their dir: creating an entry changes its dir's mtime.
  const times = execFileSync('find', [root, '-depth', '-printf', '%P\\0%y\\0'], { encoding: 'utf8' }).split('\0');
  for (let i = 0; i + 1 < times.length; i += 2) {
    const rel = times[i];
    const at = new Date(OLD.getTime() + (i / 2) * 86_400_000); // a distinct day per entry
    if (times[i + 1] === 'l') await lutimes(p(rel), at, at);
    else await utimes(rel ? p(rel) : root, at, at);
  }
  await utimes(root, OLD, OLD);
}

/**
 * Mount safety: no allow_other unless asked (mount options in /proc/self/mountinfo); a mountpoint that
 * is already a mount is refused; a non-empty mountpoint is refused unless --nonempty; `mount-backup` creates its state dirs 0700 and, traced with strace through every process
 * it starts (lower mount daemon, fuse-overlayfs, fusermount), modifies nothing outside its state dir
 * and the target.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createBackup } from '../../src/backup/create.js';
import { unmountRestoredDir } from '../../src/backup/unmount-restore.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { fixture } from '../helpers/fixtures.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';
import { mountedHere, startMount } from './mount-process.js';

const execFileP = promisify(execFile);

let work: string;
let build: PrivateBuild;
let image: string;

beforeAll(async () => {
  build = await privateBuild();
  image = (await fixture('zstd')).path;
  work = mkdtempSync(join(tmpdir(), 'hardening-safety-'));
}, 600_000);
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The per-superblock options of a mount (after the " - fstype source " part of its mountinfo line). */
function superOptions(mp: string): string[] {
  const line = mountedHere(mp)!;
  const after = line.split(' - ')[1]!.split(' ');
  return after[2]!.split(',');
}

describe('squashfs-r2 mount', () => {
  test('no allow_other unless asked; with --allow-other it is there', async () => {
    const mp = mkdtempSync(join(work, 'mnt-'));
    const plain = await startMount(build.cli, image, mp);
    try {
      expect(superOptions(mp)).not.toContain('allow_other');
      expect(mountedHere(mp)).toMatch(/\bro\b/);
    } finally {
      expect(await plain.unmount()).toBe(0);
    }
    const asked = await startMount(build.cli, image, mp, ['--allow-other']);
    try {
      expect(superOptions(mp)).toContain('allow_other');
    } finally {
      expect(await asked.unmount()).toBe(0);
    }
  }, 120_000);

  test('a mountpoint that is already a mount is refused; the first mount keeps serving', async () => {
    const mp = mkdtempSync(join(work, 'mnt-'));
    const first = await startMount(build.cli, image, mp);
    try {
      const ino = statSync(mp).ino;
      const second = await execFileP(build.cli, ['mount', image, mp], { timeout: 60_000 }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code?: number; stderr?: string }) => ({ code: e.code ?? 1, stderr: e.stderr ?? '' }),
      );
      expect(second.code).not.toBe(0);
      expect(second.stderr).toMatch(/already a mount/);
      expect(first.alive()).toBe(true);
      expect(statSync(mp).ino).toBe(ino);
      expect(
        readFileSync('/proc/self/mountinfo', 'utf8')
          .split('\n')
          .filter((l) => l.split(' ')[4] === mp).length,
      ).toBe(1);
    } finally {
      expect(await first.unmount()).toBe(0);
    }
  }, 120_000);

  // Mounting would hide the directory's files: refused with the reason, unless --nonempty asks for it.
  test('a non-empty mountpoint is refused (its files stay visible) unless --nonempty is given', async () => {
    const mp = mkdtempSync(join(work, 'nonempty-'));
    writeFileSync(join(mp, 'precious.txt'), 'do not hide me\n');
    const r = await execFileP(build.cli, ['mount', image, mp], { timeout: 60_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: number; stderr?: string }) => ({ code: e.code ?? 1, stderr: e.stderr ?? '' }),
    );
    if (mountedHere(mp)) await execFileP('fusermount', ['-u', mp]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`mountpoint ${mp} is not empty`);
    expect(r.stderr).toContain('--nonempty');
    expect(mountedHere(mp)).toBeUndefined();
    expect(readFileSync(join(mp, 'precious.txt'), 'utf8')).toBe('do not hide me\n');

    const asked = await startMount(build.cli, image, mp, ['--nonempty']);
    try {
      expect(mountedHere(mp)).toBeDefined();
      expect(existsSync(join(mp, 'precious.txt'))).toBe(false);
    } finally {
      expect(await asked.unmount()).toBe(0);
    }
    expect(readFileSync(join(mp, 'precious.txt'), 'utf8')).toBe('do not hide me\n');
  }, 120_000);
});

describe('mount-backup', () => {
  let server: S3TestServer;
  let id: string;
  const bucket = 'safety-backups';

  beforeAll(async () => {
    server = await startS3Server({ mode: 's3rver', buckets: [bucket] });
    process.env.AWS_ACCESS_KEY_ID = server.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
    const src = join(work, 'backup-src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a\n');
    writeFileSync(join(src, 'sub', 'b.bin'), Buffer.alloc(100_000, 3));
    id = (await createBackup(src, { bucket, endpoint: server.endpoint, region: server.region, compression: 'gzip' }))
      .id;
  }, 300_000);
  afterAll(async () => {
    await server?.close();
  });

  test('state dirs are created 0700 and nothing outside the state dir and the target is modified (strace)', async () => {
    const sandbox = mkdtempSync(join(work, 'sandbox-'));
    const stateDir = join(sandbox, 'state');
    const target = join(sandbox, 'target');
    const home = join(sandbox, 'home');
    mkdirSync(target);
    mkdirSync(home);
    const trace = join(work, 'mount-backup.strace');
    const args = [
      build.cli,
      'mount-backup',
      '--bucket',
      bucket,
      '--endpoint',
      server.endpoint,
      '--region',
      server.region,
      '--state-dir',
      stateDir,
      id,
      target,
    ];
    const env = { ...process.env, HOME: home, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    // -f: follow the lower daemon, fuse-overlayfs and fusermount too; -y: paths for fd arguments.
    const strace = spawn(
      'strace',
      ['-f', '-y', '-q', '-I', '1', '-s', '512', '-e', 'trace=%file,%desc', '-o', trace, ...args],
      {
        cwd: sandbox,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    strace.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // mount-backup returns once the restore is usable; its daemons live on (strace still traces them).
    const deadline = Date.now() + 90_000;
    const mainExited = (): boolean => {
      const text = readFileSync(trace, 'utf8');
      const mainPid = text.slice(0, text.indexOf(' '));
      return new RegExp(`^${mainPid}\\s+\\+\\+\\+ exited with (\\d+)`, 'm').test(text);
    };
    while (Date.now() < deadline) {
      await sleep(200);
      try {
        if (mainExited()) break;
      } catch {
        // trace file not there yet
      }
    }
    // -I 1 lets SIGTERM reach strace: it detaches from the daemons, which keep serving.
    strace.kill('SIGTERM');
    await Promise.race([new Promise((r) => strace.on('exit', r)), sleep(10_000).then(() => strace.kill('SIGKILL'))]);
    try {
      expect(mainExited(), `mount-backup did not finish: ${out}`).toBe(true);
      expect(readFileSync(trace, 'utf8')).toMatch(/^\d+\s+\+\+\+ exited with 0 \+\+\+/m);
      expect(mountedHere(target), 'the restore is mounted').toBeDefined();
      expect(readFileSync(join(target, 'a.txt'), 'utf8')).toBe('a\n');

      // 0700 for the state dir and every directory mount-backup made in it (except the overlay's own layers).
      const modes: string[] = [];
      const check = (p: string): void => {
        const mode = statSync(p).mode & 0o777;
        if (mode !== 0o700) modes.push(`${p}: ${mode.toString(8)}`);
      };
      check(stateDir);
      for (const name of readdirSync(stateDir)) {
        const p = join(stateDir, name);
        if (statSync(p).isDirectory()) check(p);
      }
      expect(modes).toEqual([]);

      const writes = modifyingPaths(readFileSync(trace, 'utf8'), sandbox);
      const outside = writes.filter(
        (p) => !inside(p, stateDir) && !inside(p, target) && !ALLOWED_OUTSIDE.some((re) => re.test(p)),
      );
      console.log(
        `mount-backup traced: ${writes.length} modifying file operations, ${outside.length} outside the state dir and target`,
      );
      expect(writes.length).toBeGreaterThan(5);
      expect([...new Set(outside)]).toEqual([]);
      expect(readdirSync(home)).toEqual([]);
      expect(readdirSync(sandbox).sort()).toEqual(['home', 'state', 'target']);
    } finally {
      await unmountRestoredDir(target, { stateDir, discardWrites: true, print: () => undefined }).catch(
        () => undefined,
      );
    }
  }, 300_000);
});

/** Device and kernel interfaces a mount legitimately opens for writing. */
const ALLOWED_OUTSIDE = [
  /^\/dev\/(fuse|null|tty|pts\/\d+)$/,
  /^\/proc\/\d+\/(fd|task)\b/,
  /^\/proc\/self\//,
  /^\/proc\/sys\/fs\/fuse\//,
];

function inside(p: string, dir: string): boolean {
  return p === dir || p.startsWith(`${dir}/`);
}

/**
 * Paths that system calls in an strace -f -y log modify: opens for writing or creating, and every
 * create/remove/rename/chmod/chown/link/utime call. Relative names resolve against their -y dir fd or cwd.
 */
function modifyingPaths(trace: string, cwd: string): string[] {
  const out: string[] = [];
  const resolvePath = (dirArg: string | undefined, name: string): string => {
    if (name.startsWith('/')) return name;
    const fdDir = dirArg ? /<([^>]+)>/.exec(dirArg)?.[1] : undefined;
    return resolve(fdDir ?? cwd, name);
  };
  for (const line of trace.split('\n')) {
    const m = /^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(line);
    if (!m || Number(m[3]) < 0) continue; // failed calls changed nothing
    const [, call, argText] = m as unknown as [string, string, string];
    const strings = [...argText.matchAll(/(?:(\w+|-?\d+(?:<[^>]*>)?)\s*,\s*)?"((?:[^"\\]|\\.)*)"/g)];
    const first = strings[0];
    if (!first) continue;
    const path = resolvePath(first[1], first[2]!);
    if (call === 'openat' || call === 'open' || call === 'creat') {
      if (call === 'creat' || /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND/.test(argText)) out.push(path);
    } else if (
      /^(mkdir|mkdirat|unlink|unlinkat|rmdir|rename|renameat2?|chmod|fchmodat|chown|lchown|fchownat|link|linkat|symlink|symlinkat|truncate|utimensat|utime|utimes|mknod|mknodat|setxattr|lsetxattr|removexattr|lremovexattr)$/.test(
        call,
      )
    ) {
      out.push(path);
      // The second path of rename/link/symlink is modified too.
      if (strings[1] && /^(rename|renameat2?|link|linkat|symlink|symlinkat)$/.test(call))
        out.push(resolvePath(strings[1][1], strings[1][2]!));
    }
  }
  return out;
}

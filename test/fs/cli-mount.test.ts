/**
 * `squashfs-r2 mount` and `unmount` as processes: the background server with its readiness report,
 * foreground mode with SIGTERM, SIGKILL leaving no dead mount, every failure exiting non-zero with
 * the cause, busy and lazy unmounts, and credentials kept out of the server's argv.
 */
import { spawn } from 'node:child_process';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountpoint } from '../../src/fs/mountpoint.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { type Fixture, fixture } from '../helpers/fixtures.js';
import {
  CLI,
  CLI_NODE,
  cleanupMountpoint,
  ensureBuilt,
  execFileP,
  processAlive,
  runCli,
  serverPid,
  tempMountpoint,
  waitFor,
} from './helpers.js';

let image: Fixture;
let server: S3TestServer;
/** R2 mode checks SigV4 signatures against the secret (s3rver itself accepts any). */
let r2: S3TestServer;
const mountpoints: string[] = [];

async function mountpoint(): Promise<string> {
  const dir = await tempMountpoint('sqfs-cli-');
  mountpoints.push(dir);
  return dir;
}

beforeAll(async () => {
  await ensureBuilt();
  image = await fixture('lz4');
  server = await startS3Server({ buckets: ['images'] });
  await server.putObject('images', 'ok/data.sqsh', await readFile(image.path));
  r2 = await startS3Server({ mode: 'r2', buckets: ['images'] });
  await r2.putObject('images', 'ok/data.sqsh', await readFile(image.path));
});
afterAll(async () => {
  for (const dir of mountpoints) await cleanupMountpoint(dir);
  await server?.close();
  await r2?.close();
});

const r2Env = () => ({ AWS_ACCESS_KEY_ID: r2.accessKeyId, AWS_SECRET_ACCESS_KEY: r2.secretAccessKey, AWS_REGION: r2.region });
const s3Env = () => ({
  AWS_ACCESS_KEY_ID: server.accessKeyId,
  AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  AWS_REGION: server.region,
});

describe('background mount', () => {
  it('returns once the mount serves, keeps serving, and unmounts with "unmount"', async () => {
    const dir = await mountpoint();
    const started = Date.now();
    const r = await runCli(['mount', image.path, dir]);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(isMountpoint(dir)).toBe(true);
    const pid = await serverPid(dir);
    expect(pid).toBeDefined();
    expect((await stat(join(dir, 'empty-file'))).size).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    const u = await runCli(['unmount', dir]);
    expect(u, u.stderr).toMatchObject({ code: 0 });
    expect(isMountpoint(dir)).toBe(false);
    await waitFor('the server to exit', () => !processAlive(pid!));
  });

  it('the node entry (bin/cli.js, no sh) starts the background server the same way', async () => {
    const dir = await mountpoint();
    const r = await runCli(
      ['mount', image.path, dir, '--log-level', 'info', '--log-file', `${dir}.log`],
      {},
      60_000,
      CLI_NODE,
    );
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(await serverPid(dir)).toBeDefined();
    expect((await stat(join(dir, 'empty-file'))).size).toBe(0);
    expect(await readFile(`${dir}.log`, 'utf8')).toContain('mounted');
    expect((await runCli(['unmount', dir])).code).toBe(0);
    await waitFor('the server to exit', async () => (await serverPid(dir)) === undefined);
  });

  it('the server runs from the bundle, and a second one from the code cache the first saved', async () => {
    const started: string[] = [];
    for (let i = 0; i < 2; i++) {
      const dir = await mountpoint();
      const log = `${dir}.log`;
      const r = await runCli(['mount', image.path, dir, '--log-file', log], { SQUASHFS_R2_LOADER_TRACE: '1' });
      expect(r, r.stderr).toMatchObject({ code: 0 });
      expect((await stat(join(dir, 'empty-file'))).size).toBe(0);
      const pid = await serverPid(dir);
      expect((await runCli(['unmount', dir])).code).toBe(0);
      await waitFor('the server to exit', () => !processAlive(pid!));
      started.push(await readFile(log, 'utf8'));
    }
    // The first may find a cache another test's server left; it saves one if not.
    expect(started[0]).toMatch(
      /squashfs-r2 loader: running the bundle, code cache \w+ \([0-9a-f]{8}-[0-9a-f]{8}-serve\.bin\)/,
    );
    expect(started[1]).toContain('code cache used');
  });

  it('mounts from S3 with credentials only in the environment, never in the server argv nor the watchdog', async () => {
    const dir = await mountpoint();
    const r = await runCli(
      [
        'mount',
        's3://images/ok/data.sqsh',
        dir,
        '--endpoint',
        server.endpoint,
        '--region',
        server.region,
        '--cache-size',
        '32M',
      ],
      s3Env(),
    );
    expect(r, r.stderr).toMatchObject({ code: 0 });
    try {
      const pid = (await serverPid(dir))!;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
      expect(cmdline).not.toContain(server.secretAccessKey === 'S3RVER' ? 'AWS_SECRET' : server.secretAccessKey);
      expect(cmdline).not.toContain('s3://');
      // The watchdog lives as long as the mount: it gets a PATH, not the server's environment.
      const watchdog = await execFileP('pgrep', ['-f', `squashfs-r2-watchdog .*${dir}$`]);
      const environ = await readFile(`/proc/${watchdog.stdout.trim()}/environ`, 'utf8');
      expect(environ.split('\0').filter(Boolean).map((e) => e.split('=')[0])).toEqual(['PATH']);
      expect((await readFile(join(dir, 'empty-file'))).length).toBe(0);
    } finally {
      await runCli(['unmount', dir]);
    }
  });

  it('fusermount -u works too, and the server exits', async () => {
    const dir = await mountpoint();
    expect((await runCli(['mount', image.path, dir])).code).toBe(0);
    const pid = (await serverPid(dir))!;
    await execFileP('fusermount3', ['-u', dir]);
    await waitFor('the server to exit', () => !processAlive(pid));
  });

  it('keeps serving past the ready timeout, which only bounds the wait for ready', async () => {
    const dir = await mountpoint();
    const env = { SQUASHFS_R2_READY_TIMEOUT_MS: '2000' };
    expect((await runCli(['mount', image.path, dir], { env })).code).toBe(0);
    const pid = (await serverPid(dir))!;
    await new Promise((r) => setTimeout(r, 3_500));
    expect(processAlive(pid), 'the server is still running').toBe(true);
    expect(isMountpoint(dir)).toBe(true);
    expect((await stat(join(dir, 'empty-file'))).size).toBe(0);
    expect((await runCli(['unmount', dir])).code).toBe(0);
  });

  it('a busy mount is refused with an explanation; --lazy detaches it', async () => {
    const dir = await mountpoint();
    expect((await runCli(['mount', image.path, dir])).code).toBe(0);
    const held = await open(join(dir, 'empty-file'));
    try {
      const r = await runCli(['unmount', dir]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/busy.*--lazy/s);
      expect(isMountpoint(dir)).toBe(true);
      const lazy = await runCli(['unmount', '--lazy', dir]);
      expect(lazy.code).toBe(0);
      expect(isMountpoint(dir)).toBe(false);
    } finally {
      await held.close();
    }
  });

  // The watchdog: started by the addon after mount(2), or the shell that ran mount(8) without it.
  it.each(['on', 'off'])('SIGKILL of the server leaves no dead mount behind (native helpers %s)', async (addon) => {
    const dir = await mountpoint();
    const env = { SQUASHFS_R2_ADDON: addon };
    expect((await runCli(['mount', image.path, dir], { env })).code).toBe(0);
    const pid = (await serverPid(dir))!;
    const watchdogs = await execFileP('pgrep', ['-f', `squashfs-r2-(watchdog .*${dir}|mount .*${dir} watch)$`]).then(
      (r) => r.stdout.trim().split('\n').length,
      () => 0,
    );
    expect(watchdogs, 'one watchdog per mount').toBe(1);
    process.kill(pid, 'SIGKILL');
    // fusermount3 unmounts once the server's socket closes; on a loaded machine that can take seconds.
    await waitFor('auto_unmount to remove the mount', () => !isMountpoint(dir), 30_000).catch(async (e: Error) => {
      throw new Error(`${e.message}; ${await afterKill(pid, dir)}`);
    });
    // The directory is usable again (no ENOTCONN).
    expect((await stat(dir)).isDirectory()).toBe(true);
  });
});

/** What a dead mount left behind after SIGKILL looks like, for the failure message. */
async function afterKill(pid: number, dir: string): Promise<string> {
  const read = (path: string) => readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => `(${e.code})`);
  const status = await read(`/proc/${pid}/status`);
  const state = /^State:.*$/m.exec(status)?.[0] ?? status;
  const stack = await read(`/proc/${pid}/stack`);
  const helpers = await execFileP('pgrep', ['-af', 'fusermount']).then(
    (r) => r.stdout.trim(),
    () => '(none)',
  );
  // In a child with a deadline: on a connection nobody serves, stat would wait forever.
  const probe = await execFileP('timeout', ['2', 'stat', '-c', '%i', dir]).then(
    (r) => `stat ok (ino ${r.stdout.trim()})`,
    (e: { stderr?: string; code?: number }) => `stat failed (${e.code}): ${e.stderr?.trim()}`,
  );
  return `server ${pid}: ${state.trim()} stack ${stack.trim()}; fusermount: ${helpers}; ${dir}: ${probe}`;
}

describe('foreground mount', () => {
  it('serves until SIGTERM, then unmounts cleanly and exits 0', async () => {
    const dir = await mountpoint();
    const child = spawn(CLI, ['mount', '-f', image.path, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await waitFor(
      'the mount',
      async () =>
        isMountpoint(dir) &&
        (await stat(join(dir, 'empty-file')).then(
          () => true,
          () => false,
        )),
      30_000,
    );
    child.kill('SIGTERM');
    expect(await exited, stderr).toBe(0);
    expect(isMountpoint(dir)).toBe(false);
  });

  it('a SIGTERM while it is still mounting ends it cleanly too (exit 0, nothing left mounted)', async () => {
    const dir = await mountpoint();
    // The image's first GETs stall for 2 s: the signal lands while the server is opening it.
    r2.injectFault({ fault: { kind: 'stall', ms: 2_000 }, match: { key: 'ok/data.sqsh' }, times: 2 });
    const env = { ...process.env, AWS_ACCESS_KEY_ID: r2.accessKeyId, AWS_SECRET_ACCESS_KEY: r2.secretAccessKey, AWS_REGION: r2.region };
    const args = ['mount', '-f', 's3://images/ok/data.sqsh', dir, '--endpoint', r2.endpoint, '--log-level', 'debug'];
    const child = spawn(CLI, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env,
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    // Logged just before it starts mounting; the stalled GETs keep it mounting for 2 s after that.
    await waitFor('the server to start mounting', () => stderr.includes('server started'), 20_000);
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    expect(await exited, stderr).toBe(0);
    expect(isMountpoint(dir)).toBe(false);
  });
});

describe('failures exit non-zero with the cause and leave nothing behind', () => {
  const cases: [string, () => Promise<{ args: string[]; env?: NodeJS.ProcessEnv; dir: string }>, RegExp][] = [
    ['missing image', async () => ({ dir: await mountpoint(), args: ['/nonexistent/image.sqsh'] }), /does not exist/],
    [
      'not an image',
      async () => {
        const dir = await mountpoint();
        const bad = `${dir}-bad.sqsh`;
        await writeFile(bad, Buffer.alloc(64 * 1024, 7));
        return { dir, args: [bad] };
      },
      /superblock|magic|corrupt/i,
    ],
    ['mountpoint missing', async () => ({ dir: '/nonexistent-mountpoint-dir', args: [image.path] }), /does not exist/],
    [
      // The image's first GETs leave while the mountpoint is checked: the mountpoint's error is the one told.
      'mountpoint missing, remote image',
      async () => ({
        dir: '/nonexistent-mountpoint-dir',
        args: ['s3://images/ok/data.sqsh', '--endpoint', r2.endpoint],
        env: r2Env(),
      }),
      /mountpoint \/nonexistent-mountpoint-dir does not exist/,
    ],
    [
      'log file cannot be opened',
      async () => ({ dir: await mountpoint(), args: [image.path, '--log-file', '/nonexistent-dir/mount.log'] }),
      /log file|no such file/i,
    ],
    ['mountpoint not a directory', async () => ({ dir: image.path, args: [image.path] }), /not a directory/],
    [
      'missing S3 object',
      async () => ({
        dir: await mountpoint(),
        args: ['s3://images/missing/data.sqsh', '--endpoint', server.endpoint],
        env: s3Env(),
      }),
      /404|not found|NoSuchKey|does not exist/i,
    ],
    [
      'bad S3 credentials',
      async () => ({
        dir: await mountpoint(),
        args: ['s3://images/ok/data.sqsh', '--endpoint', r2.endpoint],
        env: { AWS_ACCESS_KEY_ID: r2.accessKeyId, AWS_SECRET_ACCESS_KEY: 'wrong-secret-value', AWS_REGION: r2.region },
      }),
      /403|denied|signature|credential|forbidden/i,
    ],
    [
      'not ready in time',
      async () => {
        // The image's first GETs stall past the ready timeout: the server gives up, its early mount goes.
        r2.injectFault({ fault: { kind: 'stall', ms: 6_000 }, match: { key: 'ok/data.sqsh' }, times: 2 });
        return {
          dir: await mountpoint(),
          args: ['s3://images/ok/data.sqsh', '--endpoint', r2.endpoint],
          env: { ...r2Env(), SQUASHFS_R2_READY_TIMEOUT_MS: '1500' },
        };
      },
      /not ready within 1\.5 s/,
    ],
  ];

  const starters = [
    ['sh', CLI],
    ['node', CLI_NODE],
  ] as const;
  it.each(cases.flatMap(([what, setup, message]) => starters.map(([how, entry]) => [what, how, setup, message, entry] as const)))(
    '%s (started from %s)',
    async (_what, _how, setup, message, entry) => {
      const { dir, args, env } = await setup();
      const [source, ...rest] = args;
      const r = await runCli(['mount', source!, dir, ...rest], env, 60_000, entry);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain('wrong-secret-value');
      expect(isMountpoint(dir)).toBe(false);
      await waitFor('the server to exit', async () => (await serverPid(dir)) === undefined);
    },
  );

  it.each(starters)('a bad option is a usage error, exit 2 (started from %s)', async (_how, entry) => {
    const dir = await mountpoint();
    const r = await runCli(['mount', image.path, dir, '--no-such-option'], {}, 60_000, entry);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no-such-option/);
    expect(r.stderr).toMatch(/usage: squashfs-r2 mount/);
    expect(isMountpoint(dir)).toBe(false);
  });

  it('already a mount', async () => {
    const dir = await mountpoint();
    expect((await runCli(['mount', image.path, dir])).code).toBe(0);
    try {
      const r = await runCli(['mount', image.path, dir]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/already a mount/);
    } finally {
      await runCli(['unmount', dir]);
    }
  });
});

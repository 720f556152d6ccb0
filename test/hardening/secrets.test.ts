/**
 * Secrets never leave the process: with a recognisable secret key and session token (S3) and a
 * presigned URL (whose signature is the secret), run mount (background and foreground), ls, cat,
 * stat and failing operations with debug logging and a log file, then grep every log line, every
 * stdout/stderr, the mount table and the command lines of the long-lived mount processes for the
 * secret, the token and the signature. None may appear.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { presignedUrl } from '../r2/transport-helpers.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';
import { mountedHere, startMount } from './mount-process.js';

const execFileP = promisify(execFile);
const SECRET = 'hardening-SECRET-7f3a9c1e5bd24e0a9c';
const TOKEN = 'hardening-TOKEN-0b8e4d2a6c1f3e5d7a';
const KEY = 'backups/secret/data.sqsh';

let work: string;
let build: PrivateBuild;
let s3: S3TestServer; // s3rver mode: checks the access key only, so any secret signs
let r2: S3TestServer; // R2 mode: verifies SigV4, for real presigned URLs
let presigned: string;
let signature: string;
const collected: { what: string; text: string }[] = [];

beforeAll(async () => {
  build = await privateBuild();
  work = mkdtempSync(join(tmpdir(), 'hardening-secrets-'));
  mkdirSync(join(work, 'tree/sub'), { recursive: true });
  writeFileSync(join(work, 'tree/hello.txt'), 'hello\n');
  writeFileSync(join(work, 'tree/sub/data.bin'), Buffer.alloc(300_000, 7));
  await execFileP('mksquashfs', [join(work, 'tree'), join(work, 'img.sqsh'), '-noappend', '-quiet', '-no-progress']);
  const img = readFileSync(join(work, 'img.sqsh'));
  s3 = await startS3Server({ mode: 's3rver', buckets: ['images'] });
  r2 = await startS3Server({ mode: 'r2', buckets: ['images'] });
  await s3.putObject('images', KEY, img);
  await r2.putObject('images', KEY, img);
  presigned = await presignedUrl(r2, KEY);
  signature = new URL(presigned).searchParams.get('X-Amz-Signature')!;
  expect(signature).toMatch(/^[0-9a-f]{64}$/);
}, 600_000);

afterAll(async () => {
  await s3?.close();
  await r2?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

function env(): Record<string, string | undefined> {
  return {
    ...process.env,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: SECRET,
    AWS_SESSION_TOKEN: TOKEN,
    AWS_REGION: s3.region,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    SQUASHFS_R2_LOG_LEVEL: 'debug',
  };
}

/** Runs the CLI, keeps what it printed (it may fail). */
async function cli(what: string, args: string[]): Promise<number> {
  const r = await execFileP(build.cli, args, {
    env: env(),
    timeout: 120_000,
    maxBuffer: 64 << 20,
  }).then(
    (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? 1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
  collected.push({ what: `${what} stdout`, text: r.stdout }, { what: `${what} stderr`, text: r.stderr });
  return r.code;
}

/** Command lines of live processes that run our private build, and our titled mount servers. */
function ourProcessCmdlines(): { pid: string; cmdline: string }[] {
  const out: { pid: string; cmdline: string }[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(build.root) || cmdline.startsWith('squashfs-r2 mount ')) out.push({ pid, cmdline });
    } catch {
      // gone
    }
  }
  return out;
}

test('no secret key, session token or presigned signature in any log, message, mount table or process title', async () => {
  const s3Flags = ['--endpoint', s3.endpoint, '--region', s3.region];
  const spec = `s3://images/${KEY}`;
  const log = join(work, 'mount.log');

  // Background mount of s3:// and of the presigned URL; use them, then fail on purpose.
  const mpS3 = join(work, 'mnt-s3');
  const mpUrl = join(work, 'mnt-url');
  mkdirSync(mpS3);
  mkdirSync(mpUrl);
  expect(await cli('mount s3', ['mount', spec, mpS3, ...s3Flags, '--log-level', 'debug', '--log-file', log])).toBe(0);
  expect(await cli('mount presigned', ['mount', presigned, mpUrl, '--log-level', 'debug', '--log-file', log])).toBe(0);
  try {
    for (const mp of [mpS3, mpUrl]) {
      expect(readFileSync(join(mp, 'hello.txt'), 'utf8')).toBe('hello\n');
      expect(readFileSync(join(mp, 'sub/data.bin')).length).toBe(300_000);
      expect(existsSync(join(mp, 'missing'))).toBe(false);
      collected.push({ what: `mount table ${mp}`, text: mountedHere(mp) ?? '' });
    }
    const daemons = ourProcessCmdlines().filter((p) => p.cmdline.includes(mpS3) || p.cmdline.includes(mpUrl));
    expect(daemons.length).toBeGreaterThanOrEqual(2);
    for (const d of daemons) collected.push({ what: `cmdline of mount process ${d.pid}`, text: d.cmdline });
  } finally {
    await cli('unmount s3', ['unmount', mpS3]);
    await cli('unmount presigned', ['unmount', mpUrl]);
  }

  // A foreground mount (its argv is ours to give: the source is the s3:// spec, credentials from the env).
  const mpFg = join(work, 'mnt-fg');
  mkdirSync(mpFg);
  const fg = await startMount(build.cli, spec, mpFg, [...s3Flags, '--log-level', 'debug', '--log-file', log], env());
  readFileSync(join(mpFg, 'sub/data.bin'));
  collected.push({ what: 'cmdline of the foreground mount', text: readFileSync(`/proc/${fg.pid}/cmdline`, 'utf8') });
  await fg.unmount();
  collected.push({ what: 'foreground mount output', text: fg.output() });

  // Inspection commands, good and failing, over both kinds of source.
  await cli('ls s3', ['ls', spec, '/', ...s3Flags]);
  await cli('cat s3', ['cat', spec, '/hello.txt', ...s3Flags]);
  await cli('stat s3', ['stat', spec, '/sub', ...s3Flags]);
  await cli('ls presigned', ['ls', presigned, '/']);
  await cli('cat presigned', ['cat', presigned, '/hello.txt']);
  expect(await cli('cat missing file', ['cat', spec, '/nope', ...s3Flags])).not.toBe(0);
  expect(await cli('ls missing key', ['ls', `s3://images/${KEY}.missing`, '/', ...s3Flags])).not.toBe(0);
  expect(
    await cli('ls dead endpoint', ['ls', spec, '/', '--endpoint', 'http://127.0.0.1:9', '--region', s3.region]),
  ).not.toBe(0);
  const tampered = presigned.replace(
    signature,
    signature.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')),
  );
  expect(await cli('ls tampered presigned', ['ls', tampered, '/'])).not.toBe(0);
  expect(
    await cli('mount on a missing dir', [
      'mount',
      presigned,
      join(work, 'no-such-dir'),
      '--log-level',
      'debug',
      '--log-file',
      log,
    ]),
  ).not.toBe(0);
  expect(
    await cli('mount s3 missing key', [
      'mount',
      `s3://images/${KEY}.missing`,
      mpS3,
      ...s3Flags,
      '--log-level',
      'debug',
      '--log-file',
      log,
    ]),
  ).not.toBe(0);
  collected.push({ what: 'log file', text: readFileSync(log, 'utf8') });

  const logText = collected.find((c) => c.what === 'log file')!.text;
  expect(logText.split('\n').filter((l) => / debug /.test(l)).length, 'debug logging was on').toBeGreaterThan(0);
  const tamperedSignature = new URL(tampered).searchParams.get('X-Amz-Signature')!;
  const leaks = collected.flatMap((c) =>
    [SECRET, TOKEN, signature, tamperedSignature]
      .filter((s) => c.text.includes(s))
      .map((s) => `${c.what}: contains ${s.slice(0, 12)}...`),
  );
  console.log(
    `${collected.length} outputs checked (${collected.reduce((n, c) => n + c.text.split('\n').length, 0)} lines), ${leaks.length} leaks`,
  );
  expect(leaks).toEqual([]);
}, 600_000);

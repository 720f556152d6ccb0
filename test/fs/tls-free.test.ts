/**
 * A mount server that can make no TLS connection starts without NODE_EXTRA_CA_CERTS (node loads that
 * file at start). The rule exists twice, in TS (src/fs/tls-free.ts, for servers started from node) and
 * in sh (bin/squashfs-r2, for `mount`); both run here over the same cases, and a real server's
 * environment is read from /proc.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_MALLOC_TUNABLES, serverEnvironment } from '../../src/fs/daemon.js';
import { tlsFree } from '../../src/fs/tls-free.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { type Fixture, fixture } from '../helpers/fixtures.js';
import { CLI, CLI_NODE, cleanupMountpoint, ensureBuilt, runCli, serverPid, tempMountpoint } from './helpers.js';

const KEYS = { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' };
const R2_KEYS = { R2_ACCESS_KEY_ID: 'k', R2_SECRET_ACCESS_KEY: 's' };

const CASES: Array<{ args: string[]; env: Record<string, string>; free: boolean }> = [
  { args: ['mount', '/images/a.sqsh', '/mnt'], env: {}, free: true },
  { args: ['mount', 'file:///images/a.sqsh', '/mnt', '--cache-size', '64M'], env: {}, free: true },
  { args: ['mount', 'http://10.0.0.1/a.sqsh', '/mnt'], env: {}, free: true },
  { args: ['mount', 'https://example.com/a.sqsh', '/mnt'], env: {}, free: false },
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint', 'http://127.0.0.1:9000', '--path-style'], env: KEYS, free: true },
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint=http://127.0.0.1:9000'], env: KEYS, free: true },
  { args: ['mount', 'r2://b/k', '/mnt', '--endpoint', 'http://127.0.0.1:9000'], env: R2_KEYS, free: true },
  // No keys in the environment: the SDK's provider chain may go to STS or SSO over https.
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint', 'http://127.0.0.1:9000'], env: {}, free: false },
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint', 'http://127.0.0.1:9000'], env: { AWS_ACCESS_KEY_ID: 'k' }, free: false },
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint', 'http://127.0.0.1:9000', '--profile', 'p'], env: KEYS, free: false },
  { args: ['mount', 's3://b/k', '/mnt', '--profile=p', '--endpoint', 'http://127.0.0.1:9000'], env: KEYS, free: false },
  { args: ['mount', 's3://b/k', '/mnt'], env: KEYS, free: false },
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint', 'https://s3.example.com'], env: KEYS, free: false },
  { args: ['mount', 'r2://b/k', '/mnt', '--account-id', 'abc'], env: R2_KEYS, free: false },
  { args: ['mount', 's3://b/k', '/mnt', '--endpoint', 'http://127.0.0.1:9000', '--endpoint', 'https://x'], env: KEYS, free: false },
];

/** The sh rule, cut out of bin/squashfs-r2 and run by itself. */
function shTlsFree(script: string, args: string[], env: Record<string, string>): boolean {
  const fn = /^tls_free\(\) \{[\s\S]*?^\}$/m.exec(script)?.[0];
  if (!fn) throw new Error('tls_free not found in bin/squashfs-r2');
  const out = execFileSync('sh', ['-c', `${fn}\nif tls_free "$@"; then echo free; else echo tls; fi`, 'sh', ...args], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  });
  return out.trim() === 'free';
}

describe('tlsFree', () => {
  it('the TS rule and the sh rule agree, case by case', async () => {
    const script = await readFile(CLI, 'utf8');
    for (const c of CASES) {
      expect(tlsFree(c.args, c.env), c.args.join(' ')).toBe(c.free);
      expect(shTlsFree(script, c.args, c.env), `sh: ${c.args.join(' ')}`).toBe(c.free);
    }
  });

  it('serverEnvironment drops only NODE_EXTRA_CA_CERTS, only when no TLS is possible, and adds the malloc settings', () => {
    const env = { NODE_EXTRA_CA_CERTS: '/etc/ca.pem', PATH: '/bin', ...KEYS };
    const GLIBC_TUNABLES = SERVER_MALLOC_TUNABLES;
    expect(serverEnvironment(['mount', '/a.sqsh', '/mnt'], env)).toEqual({ PATH: '/bin', ...KEYS, GLIBC_TUNABLES });
    expect(serverEnvironment(['mount', 's3://b/k', '/mnt'], env)).toEqual({ ...env, GLIBC_TUNABLES });
    expect(env.NODE_EXTRA_CA_CERTS).toBe('/etc/ca.pem'); // the caller's own environment is untouched
    expect(env).not.toHaveProperty('GLIBC_TUNABLES');
    // The caller's own settings win, whatever they are.
    expect(serverEnvironment(['mount', '/a.sqsh', '/mnt'], { PATH: '/bin', GLIBC_TUNABLES: '' })).toEqual({ PATH: '/bin', GLIBC_TUNABLES: '' });
  });
});

describe('servers started by bin/squashfs-r2', () => {
  let image: Fixture;
  let server: S3TestServer;
  const mountpoints: string[] = [];
  beforeAll(async () => {
    await ensureBuilt();
    image = await fixture('lz4');
    server = await startS3Server({ buckets: ['images'] });
    await server.putObject('images', 'a.sqsh', await readFile(image.path));
  });
  afterAll(async () => {
    for (const dir of mountpoints) await cleanupMountpoint(dir);
    await server?.close();
  });

  async function environOf(args: (dir: string) => string[], env: Record<string, string>, entry = CLI): Promise<string[]> {
    const dir = await tempMountpoint('sqfs-tls-');
    mountpoints.push(dir);
    const r = await runCli(args(dir), { NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', ...env }, 60_000, entry);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    try {
      const pid = (await serverPid(dir))!;
      return (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    } finally {
      await runCli(['unmount', dir]);
    }
  }

  it('a local image and an s3:// image at an http endpoint with keys: no NODE_EXTRA_CA_CERTS', async () => {
    const local = await environOf((dir) => ['mount', image.path, dir], {});
    expect(local.some((v) => v.startsWith('NODE_EXTRA_CA_CERTS='))).toBe(false);
    const keys = { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, AWS_REGION: server.region };
    const s3 = await environOf((dir) => ['mount', 's3://images/a.sqsh', dir, '--endpoint', server.endpoint, '--path-style'], keys);
    expect(s3.some((v) => v.startsWith('NODE_EXTRA_CA_CERTS='))).toBe(false);
    expect(s3).toContain(`AWS_ACCESS_KEY_ID=${server.accessKeyId}`); // everything else is inherited
    // The same from node (bin/cli.js mount starts the server with spawnServer).
    const viaNode = await environOf((dir) => ['mount', image.path, dir], {}, CLI_NODE);
    expect(viaNode.some((v) => v.startsWith('NODE_EXTRA_CA_CERTS='))).toBe(false);
    // Both ways, the server runs with the malloc settings (huge pages, fewer mmaps). glibc 2.36 rewrites
    // the variable as it reads it (this one became "glibc.malloc.hugetlb=1"): the start is compared.
    for (const [i, environ] of [local, s3, viaNode].entries()) {
      const tunables = environ.find((v) => v.startsWith('GLIBC_TUNABLES='));
      expect(tunables?.length ?? 0, String(i)).toBeGreaterThan('GLIBC_TUNABLES=glibc.'.length);
      expect(`GLIBC_TUNABLES=${SERVER_MALLOC_TUNABLES}`.startsWith(tunables!), `${i}: ${tunables}`).toBe(true);
    }
  });

  it('a server that may use TLS keeps NODE_EXTRA_CA_CERTS', async () => {
    // An https endpoint (nothing listens there: the mount fails after its first attempts).
    const dir = await tempMountpoint('sqfs-tls-');
    mountpoints.push(dir);
    const r = await runCli(['mount', '-f', 's3://images/a.sqsh', dir, '--endpoint', 'https://127.0.0.1:1', '--path-style'], {
      NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem',
      AWS_ACCESS_KEY_ID: 'k',
      AWS_SECRET_ACCESS_KEY: 's',
      AWS_REGION: 'us-east-1',
    }, 60_000);
    // Node warns about the CA file it was told to load at start: proof the variable reached it.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/NODE_EXTRA_CA_CERTS|ca\.pem/);
  });
});

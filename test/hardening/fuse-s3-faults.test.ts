/**
 * S3 faults through a real mount: `squashfs-r2 mount s3://... --endpoint <proxy>` of an image in the
 * project's S3 server (R2 mode), with faults from the server and from the network proxy. Reads through
 * the kernel either return the source file's bytes or fail with EIO; once the fault clears they
 * succeed; the mount process never exits and unmounts cleanly.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { type NetProxy, startProxy } from '../../src/testing/net-proxy.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';
import { type MountProcess, startMount } from './mount-process.js';
import { patternBytes } from '../helpers/bytes.js';

const execFileP = promisify(execFile);
const KEY = 'backups/fuse-faults/data.sqsh';
const KiB = 1024;

let work: string;
let build: PrivateBuild;
let server: S3TestServer;
let proxy: NetProxy;
let image: Buffer;
let otherImage: Buffer;
const files = new Map<string, Buffer>();


beforeAll(async () => {
  build = await privateBuild();
  work = mkdtempSync(join(tmpdir(), 'hardening-fuse-s3-'));
  for (const [t, seed] of [
    ['tree', 1],
    ['tree2', 2],
  ] as const) {
    mkdirSync(join(work, t, 'small'), { recursive: true });
    const put = (name: string, bytes: Buffer): void => {
      if (t === 'tree') files.set(name, bytes);
      writeFileSync(join(work, t, name), bytes);
    };
    put('big.bin', patternBytes(4 << 20, 7 * seed));
    for (let i = 0; i < 10; i++) put(`small/f${i}`, patternBytes(200 + i * 91, i + seed * 100));
    await execFileP('mksquashfs', [join(work, t), join(work, `${t}.sqsh`), '-noappend', '-quiet', '-no-progress']);
  }
  image = readFileSync(join(work, 'tree.sqsh'));
  otherImage = readFileSync(join(work, 'tree2.sqsh'));
  server = await startS3Server({ mode: 'r2', buckets: ['images'] });
  await server.putObject('images', KEY, image);
  proxy = await startProxy({ target: { host: '127.0.0.1', port: server.port } });
}, 600_000);

afterAll(async () => {
  await proxy?.close();
  await server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

afterEach(async () => {
  server.clearFaults();
  proxy.setFaults(undefined);
  await server.putObject('images', KEY, image);
});

async function mountCold(): Promise<MountProcess> {
  const mp = mkdtempSync(join(work, 'mnt-'));
  const env = { ...process.env, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey };
  return startMount(
    build.cli,
    `s3://images/${KEY}`,
    mp,
    ['--endpoint', proxy.url, '--region', server.region, '--cache-size', '1M'],
    env,
  );
}

interface Tally {
  ok: number;
  eio: number;
  wrong: string[];
  other: string[];
}

/** Reads every file in 128 KiB pieces through the kernel and judges each piece. */
async function readThroughKernel(mp: string, names = [...files.keys()], stopAfterFailures = Infinity): Promise<Tally> {
  const t: Tally = { ok: 0, eio: 0, wrong: [], other: [] };
  for (const name of names) {
    const want = files.get(name)!;
    let fh: FileHandle;
    try {
      fh = await open(join(mp, name), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EIO') t.eio++;
      else t.other.push(`${name}: open: ${(e as Error).message}`);
      continue;
    }
    try {
      for (let at = 0; at < want.length; at += 128 * KiB) {
        const buf = Buffer.alloc(Math.min(128 * KiB, want.length - at));
        try {
          const { bytesRead } = await fh.read(buf, 0, buf.length, at);
          if (bytesRead !== buf.length || !buf.equals(want.subarray(at, at + buf.length)))
            t.wrong.push(`${name}@${at}`);
          else t.ok++;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EIO') t.eio++;
          else t.other.push(`${name}@${at}: ${(e as Error).message}`);
        }
        if (t.eio + t.other.length >= stopAfterFailures) return t;
      }
    } finally {
      await fh.close();
    }
  }
  return t;
}

const transient: [string, () => void][] = [
  [
    'a burst of 503 SlowDown',
    () =>
      server.injectFault({
        fault: { kind: 'status', status: 503, code: 'SlowDown' },
        times: 3,
        match: { method: 'GET', key: KEY },
      }),
  ],
  [
    'bodies cut short',
    () =>
      server.injectFault({ fault: { kind: 'truncate', bytes: 2000 }, times: 3, match: { method: 'GET', key: KEY } }),
  ],
  ['connections reset mid-body (proxy)', () => proxy.setFaults({ resetAfterBytes: 30_000, times: 3 })],
  [
    'connects refused a few times (proxy)',
    () => proxy.setFaults({ refuseConnections: 'reset', resetAfterBytes: 0, times: 3 }),
  ],
];
test.each(transient)(
  'transient: %s — every read returns the right bytes',
  async (_name, start) => {
    const m = await mountCold();
    try {
      const before = server.requests.length;
      proxy.resetStats();
      start();
      const t = await readThroughKernel(m.mountpoint);
      // The fault really hit (3 times) and was ridden out.
      expect(server.requests.slice(before).filter((r) => r.fault).length + proxy.stats().faultsTriggered).toBe(3);
      expect(t.wrong).toEqual([]);
      expect(t.other).toEqual([]);
      expect(t.eio).toBe(0);
      expect(t.ok).toBeGreaterThan(30);
      expect(m.alive()).toBe(true);
    } finally {
      expect(await m.unmount(), m.output()).toBe(0);
    }
  },
  300_000,
);

const lasting: [string, () => Promise<void> | void, () => Promise<void> | void][] = [
  [
    'every GET answers 500',
    () =>
      server.injectFault({
        fault: { kind: 'status', status: 500 },
        times: Infinity,
        match: { method: 'GET', key: KEY },
      }),
    () => server.clearFaults(),
  ],
  [
    'the network is down (proxy refuses and resets)',
    () => proxy.setFaults({ refuseConnections: 'reset', resetAfterBytes: 0 }),
    () => proxy.setFaults(undefined),
  ],
  [
    'the object is deleted',
    () => server.deleteObject('images', KEY),
    async () => void (await server.putObject('images', KEY, image)),
  ],
  [
    'the object is replaced',
    async () => void (await server.putObject('images', KEY, otherImage)),
    async () => void (await server.putObject('images', KEY, image)),
  ],
];
test.each(lasting)(
  'lasting: %s — EIO, never wrong bytes; reads succeed once it clears; the mount stays up',
  async (_name, start, clear) => {
    const m = await mountCold();
    try {
      await start();
      const during = await readThroughKernel(m.mountpoint, ['big.bin', 'small/f3'], 2);
      expect(during.wrong).toEqual([]);
      expect(during.other).toEqual([]);
      expect(during.eio).toBeGreaterThan(0);
      expect(m.alive(), m.output()).toBe(true);
      await clear();
      const after = await readThroughKernel(m.mountpoint);
      expect(after.wrong).toEqual([]);
      expect(after.other).toEqual([]);
      expect(after.eio).toBe(0);
      expect(m.alive()).toBe(true);
    } finally {
      expect(await m.unmount(), m.output()).toBe(0);
    }
  },
  300_000,
);

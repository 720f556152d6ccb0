/**
 * Memory stays bounded: 4 GiB read through a `squashfs-r2 mount` of an S3 object (R2 mode server behind
 * the network proxy) with a 64 MiB cache. The image (lz4; 4 x 64 MiB files, two incompressible and
 * stored as they are, two text that goes through the decompressor) is about four times the cache, and every pass drops the kernel's page cache for the files it read (dd iflag=nocache), so each
 * pass goes through FUSE, the reader and the chunk cache to the network again; the proxy's byte count
 * proves it. The mount process's peak RSS (VmHWM) must stay within the cache plus 150 MiB.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type NetProxy, startProxy } from '../../src/testing/net-proxy.js';
import { type S3TestServer, startS3Server } from '../../src/testing/s3-server.js';
import { wordText } from '../helpers/bytes.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';
import { startMount } from './mount-process.js';

const execFileP = promisify(execFile);
const MiB = 1 << 20;
const CACHE = 64 * MiB;
const LIMIT = CACHE + 150 * MiB;
const FILES = 4;
const FILE_SIZE = 64 * MiB;
const TOTAL_READ = Number(process.env.HARDENING_TOTAL_MIB ?? 4096) * MiB;
/** What the mount is given as --cache-size (the limit stays 64 MiB + 150 MiB): for diagnosis only. */
const MOUNT_CACHE_FLAG = process.env.HARDENING_MOUNT_CACHE ?? '64M';
const KEY = 'backups/memory/data.sqsh';

let work: string;
let imageBytes: number;
let build: PrivateBuild;
let server: S3TestServer;
let proxy: NetProxy;
const digests = new Map<string, string>();

beforeAll(async () => {
  build = await privateBuild();
  work = mkdtempSync(join(tmpdir(), 'hardening-memory-'));
  const tree = join(work, 'tree');
  mkdirSync(tree);
  for (let i = 0; i < FILES; i++) {
    // Odd files compress (words: lz4 blocks through the decompressor and the block cache), even ones
    // do not (stored blocks, copied from the chunk cache): both paths of a real backup.
    const bytes = i % 2 === 1 ? wordText(FILE_SIZE) : randomBytes(FILE_SIZE);
    digests.set(`f${i}.bin`, createHash('sha256').update(bytes).digest('hex'));
    writeFileSync(join(tree, `f${i}.bin`), bytes);
  }
  await execFileP('mksquashfs', [tree, join(work, 'img.sqsh'), '-noappend', '-quiet', '-no-progress', '-comp', 'lz4']);
  rmSync(tree, { recursive: true, force: true });
  server = await startS3Server({ mode: 'r2', buckets: ['images'] });
  const image = readFileSync(join(work, 'img.sqsh'));
  imageBytes = image.length;
  await server.putObject('images', KEY, image);
  rmSync(join(work, 'img.sqsh'));
  proxy = await startProxy({ target: { host: '127.0.0.1', port: server.port } });
}, 600_000);

afterAll(async () => {
  await proxy?.close();
  await server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('4 GiB through a 64 MiB cache: the mount process stays within cache + 150 MiB', async () => {
  const mp = join(work, 'mnt');
  mkdirSync(mp);
  const env = { ...process.env, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey };
  const m = await startMount(
    build.cli,
    `s3://images/${KEY}`,
    mp,
    ['--endpoint', proxy.url, '--region', server.region, '--cache-size', MOUNT_CACHE_FLAG],
    env,
  );
  try {
    proxy.resetStats();
    let read = 0;
    let pass = 0;
    const samples: number[] = [];
    while (read < TOTAL_READ) {
      for (let i = 0; i < FILES; i++) {
        const file = join(mp, `f${i}.bin`);
        if (pass === 0) {
          const { stdout } = await execFileP('sha256sum', [file], { timeout: 300_000 });
          expect(stdout.split(' ')[0], `f${i}.bin`).toBe(digests.get(`f${i}.bin`));
          // sha256sum filled the page cache: drop it.
          await execFileP('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
        } else {
          await execFileP('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'iflag=nocache', 'status=none'], {
            timeout: 300_000,
          });
        }
        read += FILE_SIZE;
      }
      pass++;
      samples.push(m.peakRss());
    }
    const fetched = proxy.stats().bytesDown;
    const peak = m.peakRss();
    console.log(
      `read ${(read / MiB).toFixed(0)} MiB in ${pass} passes through a 64 MiB cache; fetched ${(fetched / MiB).toFixed(0)} MiB over the proxy; ` +
        `mount VmHWM ${(peak / MiB).toFixed(1)} MiB (limit ${(LIMIT / MiB).toFixed(0)} MiB); per pass ${samples.map((s) => (s / MiB).toFixed(0)).join(' ')}`,
    );
    expect(m.alive()).toBe(true);
    // The reads really went through the mount to the network, pass after pass (the image is smaller
    // than the files: two of them are compressed). A pass may find at most a cache's worth of the
    // image still held from the pass before (the kept part of the LRU: observed 9-10% of the image, so
    // an empirical 0.9 of it failed by 192 KB in one CI run); the rest must come over the proxy.
    expect(fetched).toBeGreaterThan(pass * (imageBytes - CACHE));
    expect(peak).toBeLessThan(LIMIT);
  } finally {
    expect(await m.unmount()).toBe(0);
  }
}, 1_800_000);

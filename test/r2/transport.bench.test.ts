import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, test } from 'vitest';
import { createS3Object } from '../../src/r2/s3-object.js';

/**
 * Client cost of the hot path, measured against s3rver in a child process (so the server's CPU is not
 * counted): CPU µs per 4 KiB GET and MB/s of 1 MiB GETs, 8 in flight. Opt-in (TRANSPORT_BENCH=1):
 *   TRANSPORT_BENCH=1 npx vitest run test/r2/transport.bench.test.ts
 */
const enabled = process.env.TRANSPORT_BENCH === '1';
const OBJECT_BYTES = 64 * 1024 * 1024;

let child: ChildProcess | undefined;
let endpoint = '';
let dir = '';

beforeAll(async () => {
  if (!enabled) return;
  dir = await mkdtemp(join(tmpdir(), 'transport-bench-'));
  const script = `
    const S3rver = require('s3rver');
    const app = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: ${JSON.stringify(dir)},
      vhostBuckets: false, configureBuckets: [{ name: 'bench' }] });
    app.run().then(async (a) => {
      const content = Buffer.alloc(${OBJECT_BYTES}, 7);
      await app.store.putObject({ bucket: 'bench', key: 'obj', metadata: {}, content });
      await new Promise((r) => setTimeout(r, 500));
      console.log(a.port);
    });`;
  child = spawn(process.execPath, ['-e', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  endpoint = `http://127.0.0.1:${line.toString().trim()}`;
});
afterAll(async () => {
  child?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

type Fetch = (offset: number, length: number) => Promise<Uint8Array>;

async function run(count: number, bytes: number, parallel: number, fetchOne: Fetch) {
  // warm up connections and the signing key cache
  await Promise.all(Array.from({ length: parallel }, (_, i) => fetchOne(i * bytes, bytes)));
  const slots = Math.floor(OBJECT_BYTES / bytes);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        const got = await fetchOne(((i * 7919) % slots) * bytes, bytes);
        if (got.length !== bytes) throw new Error('short');
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = cpu.user + cpu.system;
  return {
    cpuUsPerGet: cpuUs / count,
    mbPerSecWall: (count * bytes) / 1e6 / (wallMs / 1000),
    mbPerCpuSec: (count * bytes) / 1e6 / (cpuUs / 1e6),
    getsPerSec: count / (wallMs / 1000),
  };
}

test.runIf(enabled)('hot-path cost: 4 KiB and 1 MiB ranged GETs, 8 in flight, ours vs the SDK', async () => {
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const obj = createS3Object(
    { endpoint, bucket: 'bench', key: 'obj', region: 'us-east-1', pathStyle: true, name: 's3://bench/obj' },
    credentials,
    { connections: 8 },
  );
  await obj.open(4096, 4096);
  const { S3Client, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const sdk = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
  const viaSdk: Fetch = async (offset, length) => {
    const r = await sdk.send(
      new GetObjectCommand({ Bucket: 'bench', Key: 'obj', Range: `bytes=${offset}-${offset + length - 1}` }),
    );
    return r.Body!.transformToByteArray();
  };
  const ours: Fetch = (offset, length) => obj.fetch(offset, length);
  const line = (label: string, r: Awaited<ReturnType<typeof run>>, bytes: number) =>
    `${label} ${bytes >= 1 << 20 ? '1 MiB' : '4 KiB'}: ${r.cpuUsPerGet.toFixed(0)} µs CPU/GET, ${r.getsPerSec.toFixed(0)} GET/s, ` +
    `${r.mbPerSecWall.toFixed(0)} MB/s wall, ${r.mbPerCpuSec.toFixed(0)} MB per client CPU-s`;
  const lines: string[] = [];
  for (const bytes of [4096, 1 << 20]) {
    const count = bytes === 4096 ? 3000 : 300;
    lines.push(line('undici+sigv4', await run(count, bytes, 8, ours), bytes));
    lines.push(line('aws-sdk     ', await run(count, bytes, 8, viaSdk), bytes));
  }
  console.log(lines.join('\n'));
  await obj.close();
  sdk.destroy();
});

/**
 * Chunk cache throughput: reads one random object through `openSource('s3://…')` (the S3 transport and
 * the chunk cache) from the project's local S3 server, optionally behind the network proxy, and prints
 * MiB/s, GETs and MiB fetched for a sequential reader, four parallel sequential readers, random
 * 128 KiB blocks and random 4 KiB reads. Each workload gets a fresh source (a cold cache).
 *
 * usage: node dist/bench/cache-throughput.js [--object-mib 256] [--cache-mib 64] [--rtt-ms 0] [--runs 3] [--file]
 * With --rtt-ms 0 the server is reached directly: the figure is then the cache's and transport's CPU cost.
 * --file reads a local file through `FileObject` instead (no server, no HTTP): the chunk cache's own cost.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openCachedSource } from '../src/r2/cache.js';
import { FileObject } from '../src/r2/file-object.js';
import { openSource } from '../src/r2/open-source.js';
import { type NetProxy, startProxy } from '../src/testing/net-proxy.js';
import { startS3Server } from '../src/testing/s3-server.js';

const MiB = 1 << 20;
const KiB = 1 << 10;

const { values } = parseArgs({
  options: {
    'object-mib': { type: 'string', default: '256' },
    'cache-mib': { type: 'string', default: '64' },
    'rtt-ms': { type: 'string', default: '0' },
    runs: { type: 'string', default: '3' },
    file: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: node dist/bench/cache-throughput.js [--object-mib 256] [--cache-mib 64] [--rtt-ms 0] [--runs 3] [--file]',
  );
  process.exit(0);
}
const objectBytes = Number(values['object-mib']) * MiB;
const cacheBytes = Number(values['cache-mib']) * MiB;
const rttMs = Number(values['rtt-ms']);
const runs = Number(values.runs);

/** A deterministic generator, so every run (and the old and new code) reads the same offsets. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

type Workload = (read: (at: number, len: number) => Promise<Uint8Array>) => Promise<number>;

const sequential: Workload = async (read) => {
  for (let at = 0; at < objectBytes; at += 128 * KiB) await read(at, Math.min(128 * KiB, objectBytes - at));
  return objectBytes;
};

const parallel4: Workload = async (read) => {
  const quarter = objectBytes / 4;
  await Promise.all(
    [0, 1, 2, 3].map(async (i) => {
      for (let at = i * quarter; at < (i + 1) * quarter; at += 128 * KiB) await read(at, 128 * KiB);
    }),
  );
  return objectBytes;
};

const randomBlocks: Workload = async (read) => {
  const rand = lcg(777);
  const n = 512;
  for (let i = 0; i < n; i++)
    await read(96 + Math.floor(rand() * (objectBytes / (128 * KiB) - 2)) * 128 * KiB, 128 * KiB);
  return n * 128 * KiB;
};

const random4k: Workload = async (read) => {
  const rand = lcg(4242);
  const n = 2000;
  for (let i = 0; i < n; i++) await read(Math.floor(rand() * (objectBytes - 4 * KiB)), 4 * KiB);
  return n * 4 * KiB;
};

const workloads: Array<[string, Workload]> = [
  ['sequential 128 KiB', sequential],
  ['4 parallel sequential', parallel4],
  ['random 128 KiB blocks x512', randomBlocks],
  ['random 4 KiB x2000', random4k],
];

const server = values.file ? undefined : await startS3Server({ mode: 'r2', buckets: ['bench'] });
const dir = await mkdtemp(join(tmpdir(), 'cache-throughput-'));
let proxy: NetProxy | undefined;
try {
  const object = randomBytes(objectBytes);
  let endpoint = server?.endpoint;
  if (server) await server.putObject('bench', 'object.bin', object);
  else await writeFile(join(dir, 'object.bin'), object);
  if (server && rttMs > 0) {
    proxy = await startProxy({ target: { host: '127.0.0.1', port: server.port }, rttMs });
    endpoint = proxy.url;
  }
  let file: FileObject | undefined;
  const open = async () => {
    if (!server) {
      file = await FileObject.open(join(dir, 'object.bin'));
      return openCachedSource(file, { cacheBytes });
    }
    return openSource('s3://bench/object.bin', {
      endpoint,
      region: server.region,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      env: {},
      cacheBytes,
    });
  };
  const gets = () =>
    server ? server.objectGets('object.bin').length : (file?.requests.filter((r) => r.kind === 'fetch').length ?? 0);
  const via = server ? `S3 server, rtt ${rttMs} ms` : 'local file (FileObject)';
  console.log(`object ${objectBytes / MiB} MiB, cache ${cacheBytes / MiB} MiB, ${via}, best of ${runs}`);
  for (const [name, workload] of workloads) {
    let best = 0;
    let requests = 0;
    let fetched = 0;
    for (let run = 0; run < runs; run++) {
      const source = await open();
      const before = gets();
      const t0 = process.hrtime.bigint();
      const bytes = await workload((at, len) => source.read(at, len));
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cache = (source.stats() as { cache?: { fetchedBytes: number } }).cache;
      const rate = bytes / MiB / seconds;
      if (rate > best) {
        best = rate;
        requests = gets() - before;
        fetched = (cache?.fetchedBytes ?? 0) / MiB;
      }
      await source.close();
    }
    console.log(
      `${name.padEnd(28)} ${best.toFixed(1).padStart(8)} MiB/s  ${String(requests).padStart(5)} GETs  ${fetched.toFixed(1).padStart(7)} MiB fetched`,
    );
  }
} finally {
  await proxy?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
}

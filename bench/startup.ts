import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startProxy } from '../src/testing/net-proxy.js';
import { startS3Server } from '../src/testing/s3-server.js';
import { BUCKET, FULL, RESTORE_PREFIX } from './config.js';
import { dropCaches, isMounted, pidsServing, unmount } from './mounts.js';
import { OUR_CLI, mountPeer } from './peers.js';
import { ensureRestoreBackup, restoreBackupId } from './restore-set.js';
import { CREDENTIALS, headObject, REGION, uploadFile } from './s3.js';
import { backupImage } from './workloads.js';

const USAGE = `usage: node dist/bench/startup.js [--rtt 20,5,80] [--runs 7] [--cli us=bin/squashfs-r2,...] [--peers A]
                                   [--restore] [--drop-caches] [--data-dir DIR]

Start-up only: the time from running the mount command until it returns, and until "cat" of W1's
first small file has finished after it, through the proxy at each RTT. Every variant runs once per
round, in turn (A B A B ...), so a busy machine slows all of them alike; medians are printed.
--cli name=path adds one of our builds (bin/squashfs-r2 of a checkout: compare two builds in one run).
--peers A adds s3fs + squashfuse. --restore also times mount-backup (restore until the command returns).
`;

const REPO = resolve(import.meta.dirname, '..', '..');
const ourEnv = () => ({
  ...process.env,
  AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
  AWS_REGION: REGION,
});

/** Runs a command to its exit; resolves with the wall time in ms (rejects on a non-zero exit). */
function timed(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', fail);
    child.on('exit', (code) =>
      code === 0 ? done(performance.now() - t0) : fail(new Error(`${cmd}: exit ${code}: ${err.trim()}`)),
    );
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Sample {
  mountMs: number;
  firstFileMs: number;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rtt: { type: 'string', default: '20' },
      runs: { type: 'string', default: '7' },
      cli: { type: 'string', multiple: true, default: [] },
      peers: { type: 'string', default: 'A' },
      restore: { type: 'boolean', default: false },
      'drop-caches': { type: 'boolean', default: false },
      'data-dir': { type: 'string', default: join(REPO, 'bench', '.data') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const clis = (values.cli.length ? values.cli : [`us=${OUR_CLI}`]).map((c) => {
    const [name, path] = c.split('=') as [string, string];
    return { name, path: resolve(path) };
  });
  const peers = values.peers.split(',').filter(Boolean);
  const runs = Number(values.runs);
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const image = await backupImage(resolve(values['data-dir']), FULL, log);
  const firstFile = image.smallFiles[0]!;
  const server = await startS3Server({
    directory: join(resolve(values['data-dir']), 's3'),
    buckets: [BUCKET],
    mode: 'r2',
  });
  const proxy = await startProxy({ target: { host: '127.0.0.1', port: server.port }, rttMs: 0 });
  const work = await mkdtemp('/tmp/sqstartup-');
  try {
    if ((await headObject(server.endpoint, BUCKET, image.key)) !== image.imageBytes) {
      log(`uploading ${image.key}`);
      await uploadFile(server.endpoint, BUCKET, image.key, image.imagePath);
    }
    if (values.restore) await ensureRestoreBackup(server.endpoint, image);
    for (const rtt of values.rtt.split(',').map(Number)) {
      proxy.setProfile({ rttMs: rtt, bandwidthBytesPerSec: 100e6 });
      const samples = new Map<string, Sample[]>();
      const add = (name: string, s: Sample) => samples.set(name, [...(samples.get(name) ?? []), s]);
      for (let round = 0; round < runs; round++) {
        for (const cli of clis) {
          if (values['drop-caches']) await dropCaches();
          const mnt = join(work, `${cli.name}-mnt`);
          await mkdir(mnt, { recursive: true });
          const source = `s3://${BUCKET}/${image.key}`;
          const mountMs = await timed(
            cli.path,
            ['mount', source, mnt, '--endpoint', proxy.url, '--path-style'],
            ourEnv(),
          );
          const catMs = await timed('cat', [join(mnt, firstFile)]);
          add(cli.name, { mountMs, firstFileMs: mountMs + catMs });
          await unmount(mnt, await pidsServing(mnt));
          if (values.restore) {
            if (values['drop-caches']) await dropCaches();
            const target = join(work, `${cli.name}-restored`);
            const state = join(work, `${cli.name}-state`);
            await mkdir(target, { recursive: true });
            const args = [
              'mount-backup',
              restoreBackupId(image),
              target,
              '--bucket',
              BUCKET,
              '--prefix',
              RESTORE_PREFIX,
            ];
            const restoreMs = await timed(
              cli.path,
              [...args, '--endpoint', proxy.url, '--path-style', '--state-dir', state, '--quiet'],
              ourEnv(),
            );
            const catMs = await timed('cat', [join(target, firstFile)]);
            add(`${cli.name} mount-backup`, { mountMs: restoreMs, firstFileMs: restoreMs + catMs });
            await timed(cli.path, ['unmount', target, '--state-dir', state, '--discard-writes'], ourEnv());
          }
        }
        for (const peer of peers) {
          if (peer !== 'A') throw new Error(`unknown peer ${peer} (only A)`);
          if (values['drop-caches']) await dropCaches();
          const dir = join(work, `A-${round}`);
          const mounted = await mountPeer('A', { proxyUrl: proxy.url, bucket: BUCKET, image, workDir: dir });
          const catMs = await timed('cat', [join(mounted.root, firstFile)]);
          add('A', { mountMs: mounted.mountMs, firstFileMs: mounted.mountMs + catMs });
          await mounted.teardown();
          await rm(dir, { recursive: true, force: true });
        }
      }
      log(`\n${rtt} ms RTT, ${runs} rounds (median, then every run in ms)`);
      for (const [name, s] of samples) {
        const list = (k: keyof Sample) => s.map((x) => x[k].toFixed(0)).join(' ');
        log(
          `  ${name.padEnd(18)} mount ${median(s.map((x) => x.mountMs))
            .toFixed(0)
            .padStart(4)}  [${list('mountMs')}]`,
        );
        log(
          `  ${''.padEnd(18)} +cat  ${median(s.map((x) => x.firstFileMs))
            .toFixed(0)
            .padStart(4)}  [${list('firstFileMs')}]`,
        );
      }
    }
  } finally {
    for (const cli of clis) {
      const mnt = join(work, `${cli.name}-mnt`);
      if (await isMounted(mnt)) await unmount(mnt, await pidsServing(mnt));
    }
    await proxy.close();
    await server.close();
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  },
);

import { readFile, rename, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { describeError } from '../util/log.js';
import { FAILURE_PREFIX } from './lower.js';
import type { Recording } from './prefetch.js';

/**
 * The process that serves a restore's lower mount: `node lower-daemon.js --source S --mountpoint M
 * [--stats F] [transport flags] [cache flags] [prefetch flags]`. It mounts with the FUSE library, keeps serving after mount-backup
 * returns, publishes its stats as JSON to F (every few seconds and on SIGUSR1) for `squashfs-r2 list`,
 * unmounts on SIGTERM/SIGINT, and exits once the mount is gone (also after an outside fusermount -u).
 * Credentials come from the environment it inherits, never from its argv.
 */
const STATS_INTERVAL_MS = 2_000;

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      source: { type: 'string' },
      mountpoint: { type: 'string' },
      stats: { type: 'string' },
      endpoint: { type: 'string' },
      'account-id': { type: 'string' },
      'path-style': { type: 'boolean' },
      region: { type: 'string' },
      'cache-bytes': { type: 'string' },
      'cache-dir': { type: 'string' },
      'cache-dir-max-bytes': { type: 'string' },
      hydrate: { type: 'boolean' },
      // A prefetch list already read and checked by mount-backup (its ETag is compared here).
      'prefetch-list': { type: 'string' },
      // Record the first reads and store them as s3://<record-bucket>/<record-key>.
      'record-bucket': { type: 'string' },
      'record-key': { type: 'string' },
      'record-seconds': { type: 'string' },
    },
  });
  if (!v.source || !v.mountpoint) throw new Error('--source and --mountpoint are required');
  const started = performance.now();
  const { mount } = await import('../fs/index.js');
  const imported = performance.now();
  const handle = await mount(v.source, v.mountpoint, {
    cacheBytes: v['cache-bytes'] ? Number(v['cache-bytes']) : undefined,
    cacheDir: v['cache-dir'],
    cacheDirMaxBytes: v['cache-dir-max-bytes'] ? Number(v['cache-dir-max-bytes']) : undefined,
    hydrate: v.hydrate,
    source: { endpoint: v.endpoint, accountId: v['account-id'], pathStyle: v['path-style'], region: v.region },
  });
  const ready = performance.now();
  const ms = (a: number, b: number) => `${Math.round(b - a)} ms`;
  process.stderr.write(
    `${new Date().toISOString()} lower mount ready: ${v.source} on ${v.mountpoint} (process start ${Math.round(started)} ms, import ${ms(started, imported)}, mount ${ms(imported, ready)})\n`,
  );

  const say = (level: string) => (message: string) =>
    process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
  const prefetchLog = { info: say('info'), warn: say('warn') };
  let recording: Recording | undefined;
  if (handle.source && v['record-key'] && v['record-bucket']) {
    const { recordPrefetch, uploadPrefetchList } = await import('./prefetch.js');
    const bucket = {
      bucket: v['record-bucket'],
      endpoint: v.endpoint,
      accountId: v['account-id'],
      pathStyle: v['path-style'],
      region: v.region,
    };
    const key = v['record-key'];
    recording = recordPrefetch(
      handle.source,
      Number(v['record-seconds'] ?? 120),
      (list) => uploadPrefetchList(bucket, key, list),
      prefetchLog,
    );
  } else if (handle.source && v['prefetch-list']) {
    const [{ applyPrefetchList }, { parsePrefetchList }] = await Promise.all([
      import('./prefetch.js'),
      import('../r2/prefetch-record.js'),
    ]);
    // Already checked by mount-backup; still, a bad list must never take the mount down.
    void readFile(v['prefetch-list'], 'utf8')
      .then((text) => applyPrefetchList(handle.source!, parsePrefetchList(text), prefetchLog))
      .catch((e: unknown) => prefetchLog.warn(`prefetch list ignored: ${describeError(e)}`));
  }

  const statsFile = v.stats;
  const publish = async (): Promise<void> => {
    if (!statsFile) return;
    const tmp = `${statsFile}.tmp`;
    await writeFile(tmp, JSON.stringify({ at: new Date().toISOString(), pid: process.pid, ...handle.stats() }));
    await rename(tmp, statsFile);
  };
  const timer = setInterval(() => void publish().catch(() => undefined), STATS_INTERVAL_MS);
  process.on('SIGUSR1', () => void publish().catch(() => undefined));
  await publish().catch(() => undefined);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${new Date().toISOString()} ${signal}: unmounting ${v.mountpoint}\n`);
    void recording?.finish(); // stored while the mount goes away (teardown allows a few seconds)
    handle
      .unmount({ lazyIfBusy: true })
      .catch((e: unknown) => process.stderr.write(`unmount failed: ${describeError(e)}\n`));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  await handle.closed;
  clearInterval(timer);
  await recording?.finish();
  process.stderr.write(`${new Date().toISOString()} lower mount closed\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${FAILURE_PREFIX}${describeError(e)}\n`);
    process.exit(1);
  },
);

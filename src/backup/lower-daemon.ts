import { readFile, rename, writeFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { parseArgs } from 'node:util';
import { parseFuseCpu } from '../fs/affinity.js';
import { decodeArgs, READY_FD, reportReadiness } from '../fs/daemon.js';
import { describeError } from '../util/log.js';
import { FAILURE_PREFIX } from './lower.js';
import type { Recording } from './prefetch.js';
import { writeRootXattrs } from './root-attrs.js';

/**
 * The process that serves a restore's lower mount: `node lower-daemon.js --source S --mountpoint M
 * [--stats F] [--root-xattrs F] [transport flags] [cache flags] [record flags]`. It opens the archive at once, and mounts
 * with the FUSE library once mount-backup writes `--go [--prefetch-list F]` to its stdin (end of stdin
 * without it: not needed, exit); it reports on fd 3 (src/fs/daemon.ts). It keeps serving after mount-backup
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
      'fuse-cpu': { type: 'string' },
      // Record the first reads and store them as s3://<record-bucket>/<record-key>.
      'record-bucket': { type: 'string' },
      'record-key': { type: 'string' },
      'record-seconds': { type: 'string' },
      // Where to leave the image root's xattrs for mount-backup (root-attrs.ts).
      'root-xattrs': { type: 'string' },
    },
  });
  if (!v.source || !v.mountpoint) throw new Error('--source and --mountpoint are required');
  const source = v.source;
  const started = performance.now();
  // The server's connections open, and the archive's transport loads, alongside the mount's modules.
  const where = { endpoint: v.endpoint, accountId: v['account-id'], pathStyle: v['path-style'], region: v.region };
  import('../r2/preconnect.js').then((m) => m.preconnectSource(source, where), () => undefined);
  import('../fs/open-image.js').then((m) => m.preloadSource(source), () => undefined);
  const opening = import('../fs/index.js').then(({ prepareMount }) =>
    prepareMount(source, {
      cacheBytes: v['cache-bytes'] ? Number(v['cache-bytes']) : undefined,
      cacheDir: v['cache-dir'],
      cacheDirMaxBytes: v['cache-dir-max-bytes'] ? Number(v['cache-dir-max-bytes']) : undefined,
      hydrate: v.hydrate,
      fuseCpu: parseFuseCpu(v['fuse-cpu'] ?? 'auto'),
      servesOnly: true,
      source: where,
    }),
  );
  opening.catch(() => undefined); // its failure is reported after the go, not before
  const { values: go } = parseArgs({
    args: decodeArgs(await text(process.stdin)),
    options: {
      go: { type: 'boolean' },
      // A prefetch list already read and checked by mount-backup (its ETag is compared here).
      'prefetch-list': { type: 'string' },
    },
  });
  if (!go.go) process.exit(0); // mount-backup stopped before mounting (e.g. the backup expired)
  // From here a SIGTERM/SIGINT (a teardown) must not kill the process half-way through mounting: it is
  // remembered and acted on once the mount is up.
  let stopNow: ((signal: string) => void) | undefined;
  let stopAsked: string | undefined;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopNow) stopNow(signal);
      else stopAsked ??= signal;
    });
  }
  const told = performance.now();
  const prepared = await opening;
  const opened = performance.now();
  const rootXattrs = v['root-xattrs'];
  if (rootXattrs) {
    await writeRootXattrs(prepared.reader, rootXattrs).catch(async (e: unknown) => {
      await prepared.close();
      throw new Error(`reading the archive root's xattrs: ${describeError(e)}`);
    });
  }
  const handle = await prepared.mountAt(v.mountpoint).catch(async (e: unknown) => {
    await prepared.close();
    throw e;
  });
  const ready = performance.now();
  if (stopAsked) reportReadiness(READY_FD, { error: `stopped by ${stopAsked} while mounting`, exitCode: 1 });
  else reportReadiness(READY_FD, { ready: true });
  const ms = (a: number, b: number) => `${Math.round(b - a)} ms`;
  process.stderr.write(
    `${new Date().toISOString()} lower mount ready: ${v.source} on ${v.mountpoint} (process start ${Math.round(started)} ms, told to mount after ${ms(started, told)}, opened after ${ms(started, opened)}, mount ${ms(Math.max(told, opened), ready)})\n`,
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
  } else if (handle.source && go['prefetch-list']) {
    const [{ applyPrefetchList }, { parsePrefetchList }] = await Promise.all([
      import('./prefetch.js'),
      import('../r2/prefetch-record.js'),
    ]);
    // Already checked by mount-backup; still, a bad list must never take the mount down.
    void readFile(go['prefetch-list'], 'utf8')
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
  stopNow = stop;
  if (stopAsked) stop(stopAsked);

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
    reportReadiness(READY_FD, { error: describeError(e), exitCode: 1 });
    process.exit(1);
  },
);

import { describeError } from '../util/log.js';
import type { ImageSource } from '../fs/open-image.js';
import type { ChunkCacheStats } from '../r2/cache.js';
import {
  type PrefetchList,
  PREFETCH_LIST_MAX_BYTES,
  PrefetchListError,
  PrefetchRecorder,
  parsePrefetchList,
  prefetchListMismatch,
  rangesWithin,
} from '../r2/prefetch-record.js';
import { readSmallObject } from './remote.js';
import type { BucketOptions } from './s3-client.js';

/**
 * Recorded prefetch for restores (issue 8): mount-backup reads `<prefix>/<id>/prefetch.json` and hands
 * it to the lower mount process, which fetches those ranges first; with --record-prefetch the lower
 * process records what the restore reads first and stores the list there.
 */

export type PrefetchFetch =
  | { kind: 'list'; list: PrefetchList }
  | { kind: 'missing' }
  | { kind: 'invalid'; reason: string };

/**
 * Reads the backup's prefetch.json through the mount's own transport (no SDK). Missing is normal;
 * a malformed or unreadable one is reported, never fatal: the restore works without it.
 */
export async function fetchPrefetchList(o: BucketOptions, key: string): Promise<PrefetchFetch> {
  try {
    const read = await readSmallObject(o, key, PREFETCH_LIST_MAX_BYTES);
    if ('tooLarge' in read) return { kind: 'invalid', reason: `${read.tooLarge} bytes is too large` };
    return { kind: 'list', list: parsePrefetchList(read.text) };
  } catch (e) {
    if ((e as { code?: string }).code === 'NoSuchKey') return { kind: 'missing' };
    if (e instanceof PrefetchListError) return { kind: 'invalid', reason: e.message };
    return { kind: 'invalid', reason: `could not be read: ${describeError(e)}` };
  }
}

/** Stores a recorded list as the backup's prefetch.json (the SDK is loaded only now). */
export async function uploadPrefetchList(o: BucketOptions, key: string, list: PrefetchList): Promise<void> {
  const [{ createS3Client }, { PutObjectCommand }] = await Promise.all([
    import('./s3-client.js'),
    import('@aws-sdk/client-s3'),
  ]);
  const client = await createS3Client(o);
  try {
    await client.send(
      new PutObjectCommand({ Bucket: o.bucket, Key: key, Body: JSON.stringify(list), ContentType: 'application/json' }),
    );
  } finally {
    client.destroy();
  }
}

export interface PrefetchLog {
  info(message: string): void;
  warn(message: string): void;
}

/**
 * Fetches the list's ranges through the source's cache, all submitted at once (they run in parallel
 * at readahead priority: below reads, above hydration). Without a disk cache at most half the chunk
 * memory is prefetched, so prefetched chunks do not push each other out. Resolves when all settle.
 */
export async function applyPrefetchList(source: ImageSource, list: PrefetchList, log: PrefetchLog): Promise<void> {
  if (!source.prefetch) {
    log.info('prefetch list ignored: the source is not remote');
    return;
  }
  const mismatch = prefetchListMismatch(list, { etag: source.etag, size: source.size });
  if (mismatch) {
    log.info(`prefetch list ignored: ${mismatch}`);
    return;
  }
  const cache = chunkCacheStats(source);
  const budget = cache && !cache.disk ? Math.floor(cache.capacityBytes / 2) : Number.POSITIVE_INFINITY;
  const ranges = rangesWithin(list.ranges, budget);
  const bytes = ranges.reduce((sum, [, length]) => sum + length, 0);
  const started = performance.now();
  log.info(`prefetching ${ranges.length} recorded ranges (${bytes} bytes)`);
  const results = await Promise.all(
    ranges.map(([offset, length]) => source.prefetch!(offset, length).catch(() => false)),
  );
  const failed = results.filter((ok) => !ok).length;
  log.info(
    `prefetch done in ${Math.round(performance.now() - started)} ms${failed ? `, ${failed} ranges failed` : ''}`,
  );
}

/** The chunk cache's stats when the source is one (src/r2/cache.ts). */
function chunkCacheStats(source: ImageSource): ChunkCacheStats | undefined {
  return source.stats?.().cache as ChunkCacheStats | undefined;
}

export interface Recording {
  /** Stops recording (once) and stores the list; resolves when stored or failed (logged). */
  finish(): Promise<void>;
}

/**
 * Records the chunks the source is asked for during `seconds`, then stores the list with `save`.
 * finish() ends it early (unmount). A source that cannot be observed records nothing.
 */
export function recordPrefetch(
  source: ImageSource,
  seconds: number,
  save: (list: PrefetchList) => Promise<void>,
  log: PrefetchLog,
): Recording {
  const chunkBytes = chunkCacheStats(source)?.chunkBytes;
  if (!source.observeReads || !chunkBytes || source.etag === undefined) {
    log.warn('--record-prefetch: the source is not a remote object with an ETag; nothing recorded');
    return { finish: async () => undefined };
  }
  const etag = source.etag;
  const recorder = new PrefetchRecorder(source.size, chunkBytes);
  source.observeReads((offset, length) => recorder.note(offset, length));
  let done: Promise<void> | undefined;
  const finish = (): Promise<void> => {
    if (!done) {
      clearTimeout(timer);
      source.observeReads?.(undefined);
      const list = recorder.toList(etag);
      done = save(list).then(
        () => log.info(`prefetch list stored: ${list.ranges.length} ranges, ${recorder.chunkCount} chunks`),
        (e: unknown) => log.warn(`prefetch list not stored: ${describeError(e)}`),
      );
    }
    return done;
  };
  const timer = setTimeout(() => void finish(), seconds * 1000);
  return { finish };
}

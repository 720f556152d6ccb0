import type { CachedSource } from '../r2/cache.js';
import type { OpenedSource, SourceOptions as RemoteSourceOptions } from '../r2/open-source.js';
import type { ByteSource } from '../squashfs/source.js';
import type { ReaderOptions, SquashfsReader } from '../squashfs/types.js';
import { MountError } from './mount-error.js';

/** How to reach a remote image (see src/r2/open-source.ts); credentials come from the environment. */
export type SourceOptions = Pick<
  RemoteSourceOptions,
  | 'endpoint'
  | 'accountId'
  | 'pathStyle'
  | 'region'
  | 'profile'
  | 'cacheBytes'
  | 'cacheDir'
  | 'cacheDirMaxBytes'
  | 'whileOpening'
  | 'opening'
>;

const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/** True when the spec names a remote object (s3://, r2://, http(s)://, file://), not a local path. */
export function isRemoteSpec(spec: string): boolean {
  return REMOTE.test(spec);
}

/**
 * What a mount may do with its source beyond reading: remote sources are a chunk cache (src/r2/cache.ts)
 * that can hydrate, prefetch and report the reads it serves; a local file does none of it.
 */
export type ImageSource = ByteSource &
  Partial<Pick<OpenedSource, 'stats'>> &
  Partial<Pick<CachedSource, 'etag' | 'hydrate' | 'prefetch' | 'observeReads'>>;

const MiB = 1 << 20;

/**
 * One memory budget (`--cache-size`) split between the reader's decoded blocks and the source's raw
 * chunks, so the two together never exceed it. A remote source gets most of it: raw bytes cost a round
 * trip to get again, a decoded block only a decompression. Decoded blocks get 1/8 (at least 4 MiB, at
 * most 64 MiB, never more than half). A local file's raw bytes live in the kernel's page cache, so the
 * reader gets it all.
 */
export function splitCacheBudget(totalBytes: number, remote: boolean): { readerBytes: number; sourceBytes: number } {
  if (!remote) return { readerBytes: totalBytes, sourceBytes: 0 };
  const readerBytes = Math.min(Math.floor(totalBytes / 2), Math.max(4 * MiB, Math.min(64 * MiB, Math.floor(totalBytes / 8))));
  return { readerBytes, sourceBytes: totalBytes - readerBytes };
}

/** Starts loading the modules openByteSource needs for `spec` (see preloadTransport); never rejects. */
export function preloadSource(spec: string): Promise<unknown> {
  const loading = isRemoteSpec(spec)
    ? import('../r2/open-source.js').then((m) => m.preloadTransport(spec))
    : import('../r2/file.js');
  return loading.catch(() => undefined);
}

/**
 * A source spec to a ByteSource. A local path opens the file directly (the page cache is its
 * cache, and no transport code is loaded: start-up time counts); s3://, r2://, http(s):// and
 * file:// go through openSource.
 */
export async function openByteSource(spec: string, options: SourceOptions = {}): Promise<ImageSource> {
  if (isRemoteSpec(spec)) {
    const { openSource } = await import('../r2/open-source.js');
    return openSource(spec, options);
  }
  const { FileSource } = await import('../r2/file.js');
  try {
    const file = await FileSource.open(spec);
    options.whileOpening?.();
    return file;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MountError(`image ${spec} does not exist`, { cause: e });
    if (code === 'EISDIR') throw new MountError(`image ${spec} is a directory, not an image`, { cause: e });
    if (code === 'EACCES') throw new MountError(`image ${spec} is not readable`, { cause: e });
    throw e;
  }
}

/**
 * Loads the reader's modules ahead of openReader, e.g. while the source's first round trip is in flight:
 * with the lz4 decoder, which backups use by default and which takes 10-20 ms to load (any other is
 * loaded once the superblock names it).
 */
export function preloadReader(): Promise<unknown> {
  return Promise.all([import('../squashfs/image.js'), import('../squashfs/compression/lz4.js')]);
}

/** Opens the reader; the reader owns the source from then on (its close() closes the source). */
export async function openReader(source: ByteSource, options: ReaderOptions = {}): Promise<SquashfsReader> {
  const { SquashfsImage } = await import('../squashfs/image.js');
  return SquashfsImage.open(source, options);
}

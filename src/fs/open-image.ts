import type { OpenedSource, SourceOptions as RemoteSourceOptions } from '../r2/open-source.js';
import type { ByteSource } from '../squashfs/source.js';
import type { ReaderOptions, SquashfsReader } from '../squashfs/types.js';
import { MountError } from './mountpoint.js';

/** How to reach a remote image (see src/r2/open-source.ts); credentials come from the environment. */
export type SourceOptions = Pick<RemoteSourceOptions, 'endpoint' | 'accountId' | 'pathStyle' | 'region' | 'profile' | 'cacheBytes'>;

const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * A source spec to a ByteSource. A local path opens the file directly (the page cache is its
 * cache, and no transport code is loaded: start-up time counts); s3://, r2://, http(s):// and
 * file:// go through openSource.
 */
export async function openByteSource(spec: string, options: SourceOptions = {}): Promise<ByteSource & Partial<Pick<OpenedSource, 'stats'>>> {
  if (REMOTE.test(spec)) {
    const { openSource } = await import('../r2/open-source.js');
    return openSource(spec, options);
  }
  const { FileSource } = await import('../r2/file.js');
  try {
    return await FileSource.open(spec);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MountError(`image ${spec} does not exist`, { cause: e });
    if (code === 'EISDIR') throw new MountError(`image ${spec} is a directory, not an image`, { cause: e });
    if (code === 'EACCES') throw new MountError(`image ${spec} is not readable`, { cause: e });
    throw e;
  }
}

/** Opens the reader; the reader owns the source from then on (its close() closes the source). */
export async function openReader(source: ByteSource, options: ReaderOptions = {}): Promise<SquashfsReader> {
  const { SquashfsImage } = await import('../squashfs/image.js');
  return SquashfsImage.open(source, options);
}

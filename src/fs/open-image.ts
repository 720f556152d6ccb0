import type { ByteSource } from '../squashfs/source.js';
import type { ReaderOptions, SquashfsReader } from '../squashfs/types.js';
import { MountError } from './mountpoint.js';

/** How to reach a remote image; credentials come from the environment, never from here. */
export interface SourceOptions {
  endpoint?: string;
  accountId?: string;
  pathStyle?: boolean;
  region?: string;
  /** Bytes of remote data kept in the source's chunk cache. */
  cacheBytes?: number;
}

const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * A source spec to a ByteSource. A local path opens the file directly (the page cache is its
 * cache, and no transport code is loaded); s3://, r2:// and http(s):// go through openSource,
 * which loads the AWS SDK only for the schemes that need it.
 */
export async function openByteSource(spec: string, options: SourceOptions = {}): Promise<ByteSource> {
  if (REMOTE.test(spec)) {
    const { openSource } = (await import(OPEN_SOURCE_MODULE)) as {
      openSource(spec: string, options: SourceOptions): Promise<ByteSource>;
    };
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

export async function openReader(source: ByteSource, options: ReaderOptions = {}): Promise<SquashfsReader> {
  const { SquashfsImage } = (await import(IMAGE_MODULE)) as {
    SquashfsImage: { open(source: ByteSource, options: ReaderOptions): Promise<SquashfsReader> };
  };
  return SquashfsImage.open(source, options);
}

// Named through constants while the modules land in parallel; both are plain ESM siblings.
const OPEN_SOURCE_MODULE = '../r2/open-source.js';
const IMAGE_MODULE = '../squashfs/image.js';

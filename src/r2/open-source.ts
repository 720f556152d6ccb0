import type { ByteSource } from '../squashfs/source.js';
import type { CacheOptions } from './cache.js';
import { FileSource } from './file.js';
import type { RangedObject, TransportOptions } from './ranged-object.js';
import { parseSourceSpec, type SpecOptions } from './spec.js';
import type { SourceStats } from './types.js';

/** Everything that shapes a source: how the spec is read, the transport, and the chunk cache. */
export interface SourceOptions extends SpecOptions, TransportOptions, CacheOptions {
  /** Local files only: byte offset of the image inside the file. */
  offset?: number;
}

export type OpenedSource = ByteSource & {
  stats(): SourceStats;
  close(): Promise<void>;
};

/**
 * Opens the image a spec string names (see spec.ts). A local path is a FileSource (the page cache is its
 * cache); a remote object is opened in one round trip (head + tail in parallel) behind the chunk cache.
 */
export async function openSource(spec: string, options: SourceOptions = {}): Promise<OpenedSource> {
  const parsed = parseSourceSpec(spec, options);
  if (parsed.kind === 'file') {
    const file = await FileSource.open(parsed.path, { offset: options.offset });
    return {
      name: file.name,
      size: file.size,
      read: (offset, length) => file.read(offset, length),
      close: () => file.close(),
      stats: () => ({}),
    };
  }
  const [remote, { openCachedSource }] = await Promise.all([openRemoteObject(spec, options), import('./cache.js')]);
  try {
    return await openCachedSource(remote, options);
  } catch (e) {
    await remote.close();
    throw e;
  }
}

/**
 * The remote object alone, without the cache (open() not yet called): for benchmarks and tools.
 * The transport (node:http pool, the signer) is imported here, not at start-up: a local mount never pays for it.
 */
export async function openRemoteObject(spec: string, options: SourceOptions = {}): Promise<RangedObject> {
  const parsed = parseSourceSpec(spec, options);
  const transport = transportOptions(options);
  if (parsed.kind === 'http') {
    const { createHttpObject } = await import('./http-object.js');
    return createHttpObject(parsed.url, transport);
  }
  if (parsed.kind === 's3') {
    const [{ resolveS3Access }, { createS3Object }] = await Promise.all([
      import('./s3-credentials.js'),
      import('./s3-object.js'),
    ]);
    const { location, credentials } = await resolveS3Access(parsed);
    return createS3Object(location, credentials, transport);
  }
  throw new Error(`${parsed.path} is a local path, not a remote object`);
}

function transportOptions(o: SourceOptions): TransportOptions {
  return {
    connections: o.connections,
    connectTimeoutMs: o.connectTimeoutMs,
    headersTimeoutMs: o.headersTimeoutMs,
    idleTimeoutMs: o.idleTimeoutMs,
    retry: o.retry,
  };
}

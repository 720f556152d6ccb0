import type { ByteSource } from '../squashfs/source.js';
import type { CacheOptions } from './cache.js';
import { openNow, openSpans } from './open-early.js';
import type { RangedObject, TransportOptions } from './ranged-object.js';
import { parseSourceSpec, type SpecOptions } from './spec.js';
import type { RemoteObject, SourceStats } from './types.js';

/** Everything that shapes a source: how the spec is read, the transport, and the chunk cache. */
export interface SourceOptions extends SpecOptions, TransportOptions, CacheOptions {
  /** Local files only: byte offset of the image inside the file. */
  offset?: number;
  /**
   * Called once a remote object's opening requests are on their way (for a local file: at once), so a
   * caller can load what it needs next during the round trip.
   */
  whileOpening?: () => void;
  /**
   * This object's open, already started by openRemoteEarly (its head and tail GETs on their way): taken
   * over instead of starting another. Remote specs only.
   */
  opening?: Promise<RemoteObject>;
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
    // Loaded here: with node:fs/promises it took ~4 ms of a remote mount's path to its first GET.
    const { FileSource } = await import('./file.js');
    const file = await FileSource.open(parsed.path, { offset: options.offset });
    options.whileOpening?.();
    return {
      name: file.name,
      size: file.size,
      read: (offset, length) => file.read(offset, length),
      close: () => file.close(),
      stats: () => ({}),
    };
  }
  // The head + tail GETs leave before the chunk cache's modules load, which then overlap their round trip.
  // A given `opening` was let out by its caller already.
  const remote = options.opening ? await options.opening : await openRemoteEarly(spec, options).then(letRequestsLeave);
  options.whileOpening?.();
  try {
    const { openCachedSource } = await import('./cache.js');
    return await openCachedSource(remote, options);
  } catch (e) {
    await remote.close();
    throw e;
  }
}

/**
 * Starts the open of a remote image (its head and tail GETs) before anything else is loaded: a mount
 * server calls this first and hands the result to openSource as `opening`, so the GETs leave before the
 * ~30 ms of the mount's other modules load, which then overlap their round trip. The caller owns the
 * object until openSource takes it over: one that never gets there must be closed (the CLI's server exits).
 */
export async function openRemoteEarly(spec: string, options: SourceOptions = {}): Promise<RemoteObject> {
  return openNow(await openRemoteObject(spec, options), openSpans(options));
}

/**
 * Resolves with `value` once the loop has been through a poll phase, so requests just asked are on the
 * wire: their last steps (signing, taking a connection, the write on its connect event) are promise
 * continuations and I/O callbacks, which modules loaded before then would hold back (~11 ms of a mount's
 * start). Two setImmediates: one asked from this loop turn's poll phase runs before the next poll.
 */
export function letRequestsLeave<T>(value: T): Promise<T> {
  return new Promise((resolve) => setImmediate(() => setImmediate(() => resolve(value))));
}

/**
 * Starts loading the transport modules openRemoteObject uses for `spec` (none for a local file), so they
 * load alongside the caller's other modules instead of after them. Failures are left to openSource.
 */
export function preloadTransport(spec: string): Promise<unknown> {
  const loading = /^https?:\/\//i.test(spec)
    ? import('./http-object.js')
    : /^(s3|r2):\/\//i.test(spec)
      ? Promise.all([import('./s3-credentials.js'), import('./s3-object.js')])
      : Promise.resolve();
  return loading.catch(() => undefined);
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

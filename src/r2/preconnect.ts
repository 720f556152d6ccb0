import { connect, type Socket } from 'node:net';
import { connectPlain, type ReadPort } from './http1-connection.js';
import { defaultS3Endpoint, objectUrl } from './s3-url.js';
import { parseSourceSpec, type SpecOptions } from './spec.js';

/**
 * TCP connections to a remote image's server opened before the transport's modules have loaded
 * (~30 ms), so the open's GETs find them connected: the connect's round trip overlaps module loading
 * instead of preceding the first request. The GET pool takes them for its first requests to that
 * origin: plain http ones are made as our HTTP/1.1 client makes its own (takePreconnectedPlain), TLS
 * ones are plain sockets the handshake and certificate checks then run on as on a new one
 * (takePreconnected). Untaken connections are closed after a few seconds. Nothing is sent on them.
 */

/**
 * The open's head and tail GETs, and the first burst of readahead after them: a listed directory's
 * data goes out as up to eight parallel GETs (cache.ts), each of which would otherwise wait for a
 * connect first (one round trip; the W1P small tree's GETs reached the server 20 ms later on new
 * connections than on open ones).
 */
export const OPEN_CONNECTIONS = 8;
/**
 * Of those, the open's own: head, quick tail and tail (cache-options.ts). A caller that can may open
 * these first and the rest once the GETs are written: the loop handles each connect event (~0.6 ms
 * apiece on a cold process), and the open's GETs leave only from theirs. The tail's GET on a connection
 * of its own (not one opened when it is asked) is what metadata beyond the quick tail waits for.
 */
export const OPEN_GET_CONNECTIONS = 3;
/** Closed when not taken by then (the mount failed, or never opened the source). */
const UNUSED_MS = 10_000;

interface Waiting {
  socket: Socket;
  /** Present for plain http: how the HTTP/1.1 client reads the socket. */
  port?: ReadPort;
}

const waiting = new Map<string, Waiting[]>();

/** `protocol//host:port` with the port spelt out, the key both sides compute. */
export function originKey(origin: string | URL): string {
  const url = typeof origin === 'string' ? new URL(origin) : origin;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return `${url.protocol}//${url.hostname}:${port}`;
}

/**
 * The origin the source's ranged GETs go to, when it is known without the AWS SDK (static credentials,
 * and a region or an endpoint); undefined otherwise (a local file, or an SDK-resolved region).
 */
export function sourceOrigin(spec: string, options: SpecOptions = {}): string | undefined {
  let parsed: ReturnType<typeof parseSourceSpec>;
  try {
    parsed = parseSourceSpec(spec, options);
  } catch {
    return undefined; // openSource reports it
  }
  if (parsed.kind === 'http') return parsed.url.origin;
  if (parsed.kind !== 's3' || !parsed.credentials || !parsed.region) return undefined;
  const endpoint = parsed.endpoint ?? defaultS3Endpoint(parsed.region);
  return objectUrl({ ...parsed, endpoint, region: parsed.region }).origin;
}

/** Opens `count` connections to the server of `spec` (see above); does nothing when its origin is unknown. */
export function preconnectSource(spec: string, options: SpecOptions = {}, count = OPEN_CONNECTIONS): void {
  const origin = sourceOrigin(spec, options);
  if (origin) preconnect(origin, count);
}

export function preconnect(origin: string, count: number): void {
  const url = new URL(origin);
  const key = originKey(url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const sockets = waiting.get(key) ?? [];
  for (let i = 0; i < count; i++) {
    const made =
      url.protocol === 'http:'
        ? connectPlain(host, port)
        : { socket: connect({ host, port, noDelay: true, keepAlive: true }) };
    made.socket.on('error', () => undefined); // a failed one is skipped when taken
    made.socket.unref();
    sockets.push(made);
  }
  waiting.set(key, sockets);
  setTimeout(() => {
    for (const s of waiting.get(key)?.splice(0) ?? []) s.socket.destroy();
  }, UNUSED_MS).unref();
}

/** A preconnected socket to an https `origin` that is still usable, handed over to the caller for good. */
export function takePreconnected(origin: string | URL): Socket | undefined {
  return take(origin, false)?.socket;
}

/** A preconnected socket to an http `origin`, with the read port the HTTP/1.1 client reads it through. */
export function takePreconnectedPlain(origin: string | URL): { socket: Socket; port: ReadPort } | undefined {
  const taken = take(origin, true);
  return taken?.port ? { socket: taken.socket, port: taken.port } : undefined;
}

function take(origin: string | URL, plain: boolean): Waiting | undefined {
  const sockets = waiting.get(originKey(origin));
  while (sockets?.length) {
    const next = sockets.shift()!;
    if (next.socket.destroyed || next.socket.readyState === 'closed' || (next.port !== undefined) !== plain) {
      next.socket.destroy();
      continue;
    }
    next.socket.removeAllListeners('error');
    next.socket.ref();
    return next;
  }
  return undefined;
}

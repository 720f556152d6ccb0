import { connect, type Socket } from 'node:net';
import { defaultS3Endpoint, objectUrl } from './s3-url.js';
import { parseSourceSpec, type SpecOptions } from './spec.js';

/**
 * TCP connections to a remote image's server opened before the transport's modules have loaded
 * (~30 ms), so the open's GETs find them connected: the connect's round trip overlaps module loading
 * instead of preceding the first request. GetPool takes them (takePreconnected) for its first requests
 * to that origin, TLS included (the handshake and certificate checks run on the taken socket as on a
 * new one). Untaken connections are closed after a few seconds. Nothing is sent on them.
 */

/** The open's head and tail GETs. */
const OPEN_CONNECTIONS = 2;
/** Closed when not taken by then (the mount failed, or never opened the source). */
const UNUSED_MS = 10_000;

const waiting = new Map<string, Socket[]>();

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

/** Opens the open's connections to the server of `spec` (see above); does nothing when its origin is unknown. */
export function preconnectSource(spec: string, options: SpecOptions = {}): void {
  const origin = sourceOrigin(spec, options);
  if (origin) preconnect(origin, OPEN_CONNECTIONS);
}

export function preconnect(origin: string, count: number): void {
  const url = new URL(origin);
  const key = originKey(url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const sockets = waiting.get(key) ?? [];
  for (let i = 0; i < count; i++) {
    const socket = connect({ host, port, noDelay: true, keepAlive: true });
    socket.on('error', () => undefined); // a failed one is skipped by takePreconnected
    socket.unref();
    sockets.push(socket);
  }
  waiting.set(key, sockets);
  setTimeout(() => {
    for (const s of waiting.get(key)?.splice(0) ?? []) s.destroy();
  }, UNUSED_MS).unref();
}

/** A preconnected socket to `origin` that is still usable, handed over to the caller for good. */
export function takePreconnected(origin: string | URL): Socket | undefined {
  const sockets = waiting.get(originKey(origin));
  while (sockets?.length) {
    const socket = sockets.shift()!;
    if (socket.destroyed || socket.readyState === 'closed') continue;
    socket.removeAllListeners('error');
    socket.ref();
    return socket;
  }
  return undefined;
}

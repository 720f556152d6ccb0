import { registerSecret } from '../util/log.js';
import { RangedObject, type TransportOptions } from './ranged-object.js';
import { httpDisplayName } from './spec.js';

/**
 * A public or presigned `http(s)://` URL read by plain ranged GETs (no credentials of our own).
 * The query string of a presigned URL is a credential: it is sent, never shown.
 */
export function createHttpObject(url: string | URL, options: TransportOptions = {}): RangedObject {
  const u = parseHttpUrl(url);
  for (const value of u.searchParams.values()) registerSecret(value);
  if (u.search) registerSecret(u.search.slice(1));
  let authorizer: ConstructorParameters<typeof RangedObject>[0]['authorizer'];
  if (u.username || u.password) {
    const user = decodeURIComponent(u.username);
    const password = decodeURIComponent(u.password);
    registerSecret(password);
    const basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    registerSecret(basic.slice(6));
    authorizer = { authorize: async (_method, headers) => ({ ...headers, authorization: basic }) };
  }
  return new RangedObject({ origin: u.origin, path: u.pathname + u.search, name: httpDisplayName(u), authorizer }, options);
}

function parseHttpUrl(url: string | URL): URL {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    throw new Error(`not a valid URL: ${String(url).replace(/\?.*$/, '?…')}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`not an http(s) URL: ${u.protocol}`);
  return u;
}

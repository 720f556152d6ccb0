import type { S3Location } from './s3-object.js';

/** S3 URLs: where an object lives, without loading the transport (preconnect.ts needs the origin early). */

/** AWS's own endpoint for a region (a store without --endpoint). */
export function defaultS3Endpoint(region: string): string {
  return `https://s3.${region}.amazonaws.com`;
}

/** The object's URL: path-style `endpoint/bucket/key` or virtual-hosted `bucket.endpoint/key`. */
export function objectUrl(location: S3Location): URL {
  const endpoint = new URL(location.endpoint);
  const base = endpoint.pathname.replace(/\/+$/, '');
  const key = encodeS3Key(location.key);
  if (location.pathStyle) {
    endpoint.pathname = `${base}/${encodeS3Key(location.bucket)}/${key}`;
  } else {
    endpoint.hostname = `${location.bucket}.${endpoint.hostname}`;
    endpoint.pathname = `${base}/${key}`;
  }
  endpoint.search = '';
  return endpoint;
}

/** S3's canonical URI encoding: every byte but unreserved characters and `/` is %-escaped, once. */
export function encodeS3Key(key: string): string {
  return key
    .split('/')
    .map((part) => encodeURIComponent(part).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

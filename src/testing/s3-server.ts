import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * An S3-compatible server on 127.0.0.1 for tests, demos and benchmarks: s3rver (on-disk store) with a
 * front middleware of ours. The middleware always records requests, injects planned faults and adds
 * latency; in `r2` mode it also behaves like R2 where s3rver does not: correct suffix and single-byte
 * ranges, 412 on an If-Match mismatch, and real SigV4 verification (s3rver only checks the access key).
 */

export type S3ServerMode = 's3rver' | 'r2';

export type Fault =
  /** Answer with this status and an S3 XML error body (e.g. 500 InternalError, 503 SlowDown). */
  | { kind: 'status'; status: number; code?: string; message?: string }
  /** Destroy the connection before answering. */
  | { kind: 'reset' }
  /** Send the headers (full Content-Length) and only `bytes` bytes of the body, then close. */
  | { kind: 'truncate'; bytes: number }
  /** Send nothing for `ms` (before the headers, or after `afterBytes` body bytes), then close. */
  | { kind: 'stall'; ms: number; afterBytes?: number }
  /** Wait `ms`, then answer normally (latency). */
  | { kind: 'delay'; ms: number };

export interface FaultRule {
  fault: Fault;
  /** How many matching requests get the fault (default 1; Infinity for all). */
  times?: number;
  /** Only requests whose method / object key / Range header match. */
  match?: { method?: string; key?: string; range?: RegExp };
}

export interface RequestRecord {
  method: string;
  /** Path without the query (presigned signatures stay out of test output). */
  path: string;
  range?: string;
  ifMatch?: string;
  status: number;
  fault?: Fault['kind'];
  /** Requests being served when this one arrived, itself included (2+ means it overlapped another). */
  concurrent: number;
}

export interface S3TestServer {
  readonly mode: S3ServerMode;
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  readonly directory: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
  /** Every request answered, in order. */
  readonly requests: RequestRecord[];
  /** Object GETs (not HEAD, not bucket calls) recorded so far, optionally for one key. */
  objectGets(key?: string): RequestRecord[];
  createBucket(bucket: string): Promise<void>;
  /** Stores (or replaces) an object; returns its quoted ETag. */
  putObject(bucket: string, key: string, body: Uint8Array | string): Promise<string>;
  deleteObject(bucket: string, key: string): Promise<void>;
  injectFault(rule: FaultRule): void;
  clearFaults(): void;
  /** Latency added to every request (ms), for benchmarks. */
  setLatency(ms: number): void;
  close(): Promise<void>;
}

export interface S3ServerOptions {
  mode?: S3ServerMode;
  /** Data directory; a temporary one (removed on close) when absent. */
  directory?: string;
  buckets?: string[];
  /** Listen port; 0 (default) picks a free one. */
  port?: number;
}

const ACCESS_KEY = 'S3RVER';
const SECRET_KEY = 'S3RVER';

// The parts of s3rver (a Koa app) and its store we use; s3rver ships no types.
interface KoaContext {
  method: string;
  path: string;
  querystring: string;
  headers: Record<string, string | undefined>;
  req: IncomingMessage;
  res: ServerResponse;
  status: number;
  body: unknown;
  length: number;
  respond: boolean;
  type: string;
  response: { headers: Record<string, string | string[] | number | undefined>; get(name: string): string };
  set(name: string, value: string): void;
  remove(name: string): void;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  middleware: KoaMiddleware[];
  store: {
    getResourcePath(bucket: string, key: string, resource: string): string;
    putBucket(bucket: string): Promise<void>;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
    deleteObject(bucket: string, key: string): Promise<void>;
  };
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance;

export async function startS3Server(options: S3ServerOptions = {}): Promise<S3TestServer> {
  const mode = options.mode ?? 's3rver';
  const ownDirectory = options.directory === undefined;
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), 's3-server-')));
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;
  const app = new S3rver({
    address: '127.0.0.1',
    port: options.port ?? 0,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: (options.buckets ?? []).map((name) => ({ name })),
  });

  const requests: RequestRecord[] = [];
  const rules: Array<FaultRule & { left: number }> = [];
  let latencyMs = 0;
  let active = 0;

  const takeFault = (ctx: KoaContext, key: string | undefined): Fault | undefined => {
    for (const rule of rules) {
      if (rule.left <= 0) continue;
      const m = rule.match;
      if (m?.method && m.method.toUpperCase() !== ctx.method) continue;
      if (m?.key !== undefined && m.key !== key) continue;
      if (m?.range && !m.range.test(ctx.headers.range ?? '')) continue;
      rule.left--;
      return rule.fault;
    }
    return undefined;
  };

  const front: KoaMiddleware = async (ctx, next) => {
    const target = parseObjectPath(ctx.path);
    const record: RequestRecord = {
      method: ctx.method,
      path: ctx.path,
      range: ctx.headers.range,
      ifMatch: ctx.headers['if-match'],
      status: 0,
      concurrent: ++active,
    };
    requests.push(record);
    try {
      if (latencyMs > 0) await sleep(latencyMs);
      const fault = takeFault(ctx, target?.key);
      if (fault) record.fault = fault.kind;
      if (fault && (await applyFaultBefore(ctx, fault))) return;
      if (mode === 'r2') {
        const denied = verifySignature(ctx);
        if (denied && (await denied)) return;
      }
      const range = mode === 'r2' && target && ctx.method === 'GET' ? takeRange(ctx) : undefined;
      await next();
      if (mode === 'r2' && target) {
        if (checkIfMatch(ctx)) return;
        if (range) applyRange(ctx, range, app.store.getResourcePath(target.bucket, target.key, 'object'));
      }
      if (fault) await applyFaultAfter(ctx, fault);
    } finally {
      active--;
      record.status = ctx.status;
    }
  };
  app.middleware.unshift(front);

  const address = await app.run();
  const port = address.port;
  const endpoint = `http://127.0.0.1:${port}`;

  return {
    mode,
    endpoint,
    port,
    directory,
    accessKeyId: ACCESS_KEY,
    secretAccessKey: SECRET_KEY,
    region: 'us-east-1',
    requests,
    objectGets: (key) =>
      requests.filter((r) => {
        if (r.method !== 'GET') return false;
        const t = parseObjectPath(r.path);
        return t !== undefined && (key === undefined || t.key === key);
      }),
    createBucket: (bucket) => app.store.putBucket(bucket),
    async putObject(bucket, key, body) {
      const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      const md5 = createHash('md5').update(bytes).digest('hex');
      const objectPath = app.store.getResourcePath(bucket, key, 'object');
      await mkdir(dirname(objectPath), { recursive: true });
      // Write then rename, so a concurrent GET sees the old or the new object, not a partial one.
      const tmp = `${objectPath}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      await writeFile(tmp, bytes);
      await app.store.putMetadata(bucket, key, { 'content-type': 'application/octet-stream' }, md5);
      await rename(tmp, objectPath);
      return JSON.stringify(md5);
    },
    deleteObject: (bucket, key) => app.store.deleteObject(bucket, key),
    injectFault: (rule) => rules.push({ ...rule, left: rule.times ?? 1 }),
    clearFaults: () => {
      rules.length = 0;
    },
    setLatency: (ms) => {
      latencyMs = ms;
    },
    async close() {
      app.httpServer?.closeAllConnections();
      await app.close();
      if (ownDirectory) await rm(directory, { recursive: true, force: true });
    },
  };
}

/** `/bucket/key…` (path style; the server binds an IP, so there are no virtual hosts). */
function parseObjectPath(path: string): { bucket: string; key: string } | undefined {
  const m = /^\/([^/]+)\/(.+)$/.exec(path);
  if (!m) return undefined;
  try {
    return { bucket: decodeURIComponent(m[1]!), key: m[2]!.split('/').map(decodeURIComponent).join('/') };
  } catch {
    return undefined;
  }
}

function sendS3Error(ctx: KoaContext, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

/** Faults that replace the answer; true when the request is finished. */
async function applyFaultBefore(ctx: KoaContext, fault: Fault): Promise<boolean> {
  switch (fault.kind) {
    case 'status':
      sendS3Error(ctx, fault.status, fault.code ?? 'InternalError', fault.message ?? 'Injected fault.');
      return true;
    case 'reset':
      ctx.respond = false;
      ctx.req.socket.destroy();
      return true;
    case 'delay':
      await sleep(fault.ms);
      return false;
    case 'stall':
      if (fault.afterBytes === undefined) {
        await sleepUntilClosed(ctx, fault.ms);
        ctx.respond = false;
        ctx.req.socket.destroy();
        return true;
      }
      return false;
    case 'truncate':
      return false;
  }
}

/** Faults that damage a real answer after s3rver produced it. */
async function applyFaultAfter(ctx: KoaContext, fault: Fault): Promise<void> {
  if (fault.kind !== 'truncate' && !(fault.kind === 'stall' && fault.afterBytes !== undefined)) return;
  const body = ctx.body as Readable | undefined;
  if (!body || typeof (body as Readable).pipe !== 'function') return;
  const limit = fault.kind === 'truncate' ? fault.bytes : fault.afterBytes!;
  ctx.respond = false;
  const res = ctx.res;
  res.statusCode = ctx.status;
  for (const [name, value] of Object.entries(ctx.response.headers)) {
    if (value !== undefined) res.setHeader(name, value as string);
  }
  res.flushHeaders();
  let sent = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    const part = chunk.subarray(0, limit - sent);
    if (part.length > 0) await new Promise<void>((resolve) => res.write(part, () => resolve()));
    sent += part.length;
    if (sent >= limit) break;
  }
  body.destroy();
  if (fault.kind === 'stall') await sleepUntilClosed(ctx, fault.ms);
  res.socket?.destroy();
}

async function sleepUntilClosed(ctx: KoaContext, ms: number): Promise<void> {
  const ac = new AbortController();
  const onClose = () => ac.abort();
  ctx.req.socket.once('close', onClose);
  await sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined);
  ctx.req.socket.off('close', onClose);
}

type RangeAsk = { start?: number; end?: number; suffix?: number };

/** Takes the Range header away from s3rver (which mishandles `-N` and `0-0`); applyRange answers it. */
function takeRange(ctx: KoaContext): RangeAsk | undefined {
  const header = ctx.headers.range;
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  delete ctx.headers.range;
  delete ctx.req.headers.range;
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // unparseable: ignored, as RFC 9110 allows
  if (m[1] === '') return { suffix: Number(m[2]) };
  return { start: Number(m[1]), end: m[2] === '' ? undefined : Number(m[2]) };
}

function applyRange(ctx: KoaContext, ask: RangeAsk, objectPath: string): void {
  if (ctx.status !== 200) return;
  const size = Number(ctx.response.get('Content-Length'));
  let start: number;
  let end: number;
  if (ask.suffix !== undefined) {
    start = Math.max(0, size - ask.suffix);
    end = size - 1;
  } else {
    start = ask.start!;
    end = Math.min(ask.end ?? size - 1, size - 1);
  }
  (ctx.body as Readable | undefined)?.destroy?.();
  if (size === 0 || start > end || start >= size) {
    ctx.remove('ETag');
    ctx.set('Content-Range', `bytes */${size}`);
    sendS3Error(ctx, 416, 'InvalidRange', 'The requested range is not satisfiable');
    return;
  }
  ctx.body = createReadStream(objectPath, { start, end });
  ctx.status = 206;
  ctx.set('Content-Range', `bytes ${start}-${end}/${size}`);
  ctx.length = end - start + 1;
}

/** R2/S3 answer 412 when If-Match names another ETag; true when it did. */
function checkIfMatch(ctx: KoaContext): boolean {
  const ifMatch = ctx.headers['if-match'];
  if (!ifMatch || ctx.status < 200 || ctx.status >= 300) return false;
  const etag = ctx.response.get('ETag');
  const wanted = ifMatch.split(',').map((s) => s.trim());
  if (wanted.includes('*') || wanted.includes(etag)) return false;
  (ctx.body as Readable | undefined)?.destroy?.();
  ctx.remove('Content-Range');
  sendS3Error(ctx, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
  return true;
}

/**
 * Recomputes the SigV4 signature of a header-signed or presigned request with the known secret.
 * Returns a promise of true (request answered with 403) or undefined when unsigned.
 */
function verifySignature(ctx: KoaContext): Promise<boolean> | undefined {
  const auth = ctx.headers.authorization;
  const query = new URLSearchParams(ctx.querystring);
  if (auth?.startsWith('AWS4-HMAC-SHA256 ')) return verifyHeaderSignature(ctx, auth);
  if (query.get('X-Amz-Algorithm') === 'AWS4-HMAC-SHA256') return verifyPresigned(ctx, query);
  return undefined;
}

const SECRETS = new Map([[ACCESS_KEY, SECRET_KEY]]);

function signerFor(scope: string[]): SignatureV4 | undefined {
  const [accessKeyId, , region, service] = scope;
  const secret = accessKeyId ? SECRETS.get(accessKeyId) : undefined;
  if (!secret || !region || !service) return undefined;
  return new SignatureV4({
    credentials: { accessKeyId: accessKeyId!, secretAccessKey: secret },
    region,
    service,
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
}

function parseAmzDate(s: string | undefined): Date | undefined {
  const m = s ? /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  return m ? new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)) : undefined;
}

function requestHost(ctx: KoaContext): { hostname: string; port?: number } {
  const [hostname, port] = (ctx.headers.host ?? '').split(':');
  return { hostname: hostname!, port: port ? Number(port) : undefined };
}

async function verifyHeaderSignature(ctx: KoaContext, auth: string): Promise<boolean> {
  const fields = new Map(
    auth
      .slice('AWS4-HMAC-SHA256 '.length)
      .split(',')
      .map((p) => {
        const [k, ...v] = p.trim().split('=');
        return [k!, v.join('=')] as const;
      }),
  );
  const scope = (fields.get('Credential') ?? '').split('/');
  const signer = signerFor(scope);
  // An unknown key is s3rver's own 403 (InvalidAccessKeyId); we only add the signature check.
  if (!signer) return false;
  const signedHeaders = (fields.get('SignedHeaders') ?? '').split(';');
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const v = ctx.req.headers[name];
    if (v !== undefined) headers[name] = Array.isArray(v) ? v.join(',') : v;
  }
  const signingDate = parseAmzDate(headers['x-amz-date']);
  const query = Object.fromEntries(new URLSearchParams(ctx.querystring));
  const signed = await signer.sign(
    { method: ctx.method, protocol: 'http:', ...requestHost(ctx), path: rawPath(ctx), query, headers },
    { signingDate, signableHeaders: new Set(signedHeaders) },
  );
  const expected = /Signature=([0-9a-f]+)/.exec(String(signed.headers.authorization ?? ''))?.[1];
  if (expected && expected === fields.get('Signature')) return false;
  sendS3Error(
    ctx,
    403,
    'SignatureDoesNotMatch',
    'The request signature we calculated does not match the signature you provided. Check your secret access key and signing method.',
  );
  return true;
}

async function verifyPresigned(ctx: KoaContext, query: URLSearchParams): Promise<boolean> {
  const scope = (query.get('X-Amz-Credential') ?? '').split('/');
  const signer = signerFor(scope);
  if (!signer) return false;
  const signingDate = parseAmzDate(query.get('X-Amz-Date') ?? undefined);
  const expiresIn = Number(query.get('X-Amz-Expires'));
  if (!signingDate || !Number.isFinite(expiresIn)) {
    sendS3Error(ctx, 403, 'AccessDenied', 'Invalid presigned request.');
    return true;
  }
  if (Date.now() > signingDate.getTime() + expiresIn * 1000) {
    sendS3Error(ctx, 403, 'AccessDenied', 'Request has expired');
    return true;
  }
  const rest: Record<string, string> = {};
  for (const [k, v] of query) if (!k.startsWith('X-Amz-')) rest[k] = v;
  const signedHeaders = (query.get('X-Amz-SignedHeaders') ?? 'host').split(';');
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const v = ctx.req.headers[name];
    if (v !== undefined) headers[name] = Array.isArray(v) ? v.join(',') : v;
  }
  // S3 presigned URLs sign an unsigned payload; the header only feeds the hash and stays out of the query.
  headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  const presigned = await signer.presign(
    { method: ctx.method, protocol: 'http:', ...requestHost(ctx), path: rawPath(ctx), query: rest, headers },
    {
      signingDate,
      expiresIn,
      signableHeaders: new Set(signedHeaders),
      unsignableHeaders: new Set(['x-amz-content-sha256']),
      unhoistableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
  if (presigned.query?.['X-Amz-Signature'] === query.get('X-Amz-Signature')) return false;
  sendS3Error(ctx, 403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  return true;
}

function rawPath(ctx: KoaContext): string {
  const url = ctx.req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

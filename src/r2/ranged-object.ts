import { logger } from '../util/log.js';
import { rangeInside } from '../util/range.js';
import { type ByteRange, expectedSpan, parseContentRange, rangeHeader } from './content-range.js';
import { classifyTransportError, isRetryableStatus, parseS3ErrorBody, SourceError } from './errors.js';
import { BodyOverflowError, type GetResponse } from './get-response.js';
import { type GetPool, getPool } from './http-get.js';
import { type AttemptContext, type RetryPolicy, retryPolicy, withRetry } from './retry.js';
import { TransportCounters } from './stats.js';
import type { ObjectInfo, OpenResult, RemoteObject, TransportStats } from './types.js';

const log = logger('r2');

/** Connection and timeout settings shared by the HTTP and S3 transports. */
export interface TransportOptions {
  /** Upper bound on parallel connections (and so on parallel GETs) to the server. Default 16. */
  connections?: number;
  /** TCP + TLS connect timeout of one attempt. Default 10 s. */
  connectTimeoutMs?: number;
  /** Time to the response headers of one attempt. Default 20 s. */
  headersTimeoutMs?: number;
  /** Longest silence while the body arrives (a stalled response). Default 20 s. */
  idleTimeoutMs?: number;
  /** Retry budget of one read (attempts, backoff, total time). */
  retry?: Partial<RetryPolicy>;
}

/** Adds authentication headers to one request (S3 SigV4); absent for public and presigned URLs. */
export interface RequestAuthorizer {
  authorize(method: 'GET', headers: Record<string, string>): Promise<Record<string, string>>;
}

export interface RangedObjectTarget {
  /** `protocol://host[:port]` of the server. */
  origin: string;
  /** Request target: encoded path plus any query (a presigned URL's signature lives here). */
  path: string;
  /** Credential-free name for messages. */
  name: string;
  authorizer?: RequestAuthorizer;
}

interface Exchange {
  bytes: Uint8Array;
  start: number;
  info: ObjectInfo;
}

const ERROR_BODY_LIMIT = 64 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * One object read by ranged GETs on a keep-alive connection pool (http-get.ts). Every response is checked (status,
 * Content-Range, length, ETag) before a byte of it is returned; the first response's identity (size, ETag,
 * Last-Modified) is pinned and every later request carries If-Match.
 */
export class RangedObject implements RemoteObject {
  readonly name: string;
  private readonly target: RangedObjectTarget;
  private readonly pool: GetPool;
  private readonly policy: RetryPolicy;
  private readonly headersTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly counters = new TransportCounters();
  private info?: ObjectInfo;
  private closed = false;

  constructor(target: RangedObjectTarget, options: TransportOptions = {}) {
    this.target = target;
    this.name = target.name;
    this.policy = retryPolicy(options.retry);
    this.headersTimeoutMs = options.headersTimeoutMs ?? 20_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 20_000;
    const connections = options.connections ?? 16;
    if (!Number.isSafeInteger(connections) || connections < 1) throw new RangeError(`connections must be >= 1`);
    this.pool = getPool(target.origin, {
      connections,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      headersTimeoutMs: this.headersTimeoutMs,
      idleTimeoutMs: this.idleTimeoutMs,
    });
  }

  /** The pinned identity, once `open` has succeeded. */
  get objectInfo(): ObjectInfo | undefined {
    return this.info;
  }

  async open(headBytes: number, tailBytes: number, quickTailBytes = 0): Promise<OpenResult> {
    if (!Number.isSafeInteger(headBytes) || headBytes < 1) throw new RangeError(`headBytes must be >= 1`);
    if (!Number.isSafeInteger(tailBytes) || tailBytes < 0) throw new RangeError(`tailBytes must be >= 0`);
    if (!Number.isSafeInteger(quickTailBytes) || quickTailBytes < 0)
      throw new RangeError(`quickTailBytes must be >= 0`);
    const quick = quickTailBytes > 0 && quickTailBytes < tailBytes;
    // Some servers (s3rver) answer `bytes=0-0` with the whole object: never ask for a single byte.
    const headAsk = Math.max(2, headBytes);
    const headP = this.retrying({ kind: 'span', start: 0, end: headAsk - 1 });
    const suffix = (length: number) =>
      length > 0 ? this.retrying({ kind: 'suffix', length }, undefined, true) : Promise.resolve(undefined);
    // Asked before the whole tail, which is needed later: a server answers them in order of arrival.
    const quickP = quick ? suffix(quickTailBytes) : undefined;
    const tailP = suffix(tailBytes);
    tailP.catch(() => undefined); // settled below, possibly after a fallback's round trip
    const [head, firstTail] = await Promise.allSettled([headP, quickP ?? tailP]);
    if (head.status === 'rejected') throw head.reason;
    const first = head.value;
    this.pinIdentity(first.info, undefined);
    const size = first.info.size;
    const headOut = first.bytes.subarray(0, Math.min(headBytes, size));
    const tailOut = await this.tailOf(firstTail, quick ? quickTailBytes : tailBytes, size);
    // The quick tail may be the whole object: the long one is then not needed.
    if (!quick || size <= quickTailBytes) return { info: { ...this.info! }, head: headOut, tail: tailOut };
    // No explicit-range fallback for it: where suffixes go wrong, retain and reads fetch what they need.
    const fullTail = Promise.allSettled([tailP]).then(([settled]) => this.tailOf(settled!, tailBytes, size, false));
    fullTail.catch(() => undefined); // its taker handles a failure; nobody may take it
    return { info: { ...this.info! }, head: headOut, tail: tailOut, fullTail };
  }

  /**
   * The last `tailBytes` of the object from a settled suffix GET, or (`fallback`) by explicit range
   * where the server got the suffix wrong.
   */
  private async tailOf(
    settled: PromiseSettledResult<Exchange | undefined>,
    tailBytes: number,
    size: number,
    fallback = true,
  ): Promise<Uint8Array> {
    const tailLength = Math.min(tailBytes, size);
    if (tailLength === 0) return new Uint8Array(0);
    if (settled.status === 'fulfilled' && settled.value) {
      this.pinIdentity(settled.value.info, settled.value.start);
      return settled.value.bytes;
    }
    if (settled.status === 'rejected' && (!fallback || !isRangeFault(settled.reason))) throw settled.reason;
    // The server got the suffix range wrong (s3rver returns the first bytes): ask the explicit span.
    log.debug(`${this.name}: suffix range answered wrongly, fetching the tail by explicit range`);
    return this.fetch(size - tailLength, tailLength);
  }

  async fetch(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    this.checkFetch(offset, length);
    if (length === 0) return new Uint8Array(0);
    // See open(): a one-byte range is widened by a neighbour and sliced.
    if (length === 1 && this.info!.size >= 2) {
      const start = offset > 0 ? offset - 1 : 0;
      const pair = await this.retrying({ kind: 'span', start, end: start + 1 }, signal);
      return pair.bytes.subarray(offset - start, offset - start + 1);
    }
    const got = await this.retrying({ kind: 'span', start: offset, end: offset + length - 1 }, signal);
    return got.bytes;
  }

  async fetchInto(offset: number, targets: readonly Uint8Array[], signal?: AbortSignal): Promise<void> {
    const length = targets.reduce((sum, t) => sum + t.length, 0);
    this.checkFetch(offset, length);
    if (length === 0) return;
    if (length === 1) {
      // fetch() widens a one-byte range (see open()).
      const bytes = await this.fetch(offset, 1, signal);
      targets.find((t) => t.length === 1)!.set(bytes);
      return;
    }
    await this.retrying({ kind: 'span', start: offset, end: offset + length - 1 }, signal, false, targets);
  }

  private checkFetch(offset: number, length: number): void {
    if (this.closed) throw new Error(`${this.name}: source is closed`);
    const info = this.info;
    if (!info) throw new Error(`${this.name}: fetch before open`);
    if (!rangeInside(offset, length, info.size)) {
      throw new RangeError(`${this.name}: read [${offset}, +${length}) outside the object (${info.size} bytes)`);
    }
  }

  stats(): TransportStats {
    return this.counters.snapshot();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Every connection goes, idle or not: a stalled request must not keep the process alive.
    this.pool.destroy();
  }

  private pinIdentity(seen: ObjectInfo, start: number | undefined): void {
    if (!this.info) {
      this.info = { ...seen };
      return;
    }
    const problem = identityMismatch(this.info, seen);
    if (problem) {
      throw new SourceError(`object changed since it was opened (${problem})`, {
        object: this.name,
        code: 'ObjectChanged',
        range: start === undefined ? undefined : [start, start],
      });
    }
  }

  /**
   * `probe`: a wrong-shaped answer is expected from some servers and handled by the caller (not a failure).
   * `targets`: where the body goes (a span range of exactly their total length); the exchange's bytes are then empty.
   */
  private async retrying(
    range: ByteRange,
    signal?: AbortSignal,
    probe = false,
    targets?: readonly Uint8Array[],
  ): Promise<Exchange> {
    const asked = describeRange(range);
    try {
      return await withRetry(this.policy, (ctx) => this.attempt(range, ctx, signal, targets), {
        signal,
        isRetryable: (e) => e instanceof SourceError && e.retryable,
        onRetry: (e, attempt, delay) => {
          this.counters.retries++;
          if (log.enabled('debug')) {
            log.debug(
              `${this.name} ${asked}: attempt ${attempt} failed (${(e as Error).message}); retry in ${delay} ms`,
            );
          }
        },
        exhausted: (last, attempts, elapsed) => {
          const l = last as SourceError;
          return new SourceError(
            `gave up after ${attempts} attempts in ${elapsed} ms (limit ${this.policy.maxAttempts} attempts, ${this.policy.totalTimeoutMs} ms): ${l.message}`,
            { object: this.name, code: 'RetriesExhausted', status: l.status, range: l.range, attempts, cause: last },
          );
        },
      });
    } catch (e) {
      if (probe && isRangeFault(e)) throw e;
      this.counters.failures++;
      // The caller reports the error itself; a warning only for trouble that outlasted the retries.
      if (e instanceof SourceError && e.code === 'RetriesExhausted') log.warn((e as Error).message);
      else if (log.enabled('debug')) log.debug(`${asked} failed: ${(e as Error).message}`);
      throw e;
    }
  }

  private async attempt(
    range: ByteRange,
    ctx: AttemptContext,
    signal?: AbortSignal,
    targets?: readonly Uint8Array[],
  ): Promise<Exchange> {
    const span: [number, number] | undefined = range.kind === 'span' ? [range.start, range.end] : undefined;
    const fail = (
      code: string,
      message: string,
      extra: { status?: number; retryable?: boolean; cause?: unknown } = {},
    ) => new SourceError(message, { object: this.name, code, range: span, ...extra });

    let headers: Record<string, string> = { range: rangeHeader(range), 'accept-encoding': 'identity' };
    const etag = this.info?.etag;
    if (etag && !etag.startsWith('W/')) headers['if-match'] = etag;
    if (this.target.authorizer) headers = await this.target.authorizer.authorize('GET', headers);

    // One timer per attempt bounds it by the remaining budget (cheaper than AbortSignal.timeout/any).
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), Math.max(1, ctx.remainingMs));
    const onCallerAbort = () => abort.abort();
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    if (signal?.aborted) abort.abort();
    const started = performance.now();
    this.counters.requests++;
    this.counters.inFlight++;
    let body: GetResponse | undefined;
    try {
      let res: GetResponse;
      try {
        res = await this.pool.get(this.target.path, headers, abort.signal);
      } catch (e) {
        throw this.transportFailure(e, signal, fail);
      }
      body = res;
      const status = res.statusCode;
      const h = res.headers;

      if (status === 412) {
        throw fail('ObjectChanged', 'object changed since it was opened (412 Precondition Failed on If-Match)', {
          status,
        });
      }
      if (status === 416) {
        const cr = parseContentRange(h['content-range']);
        if (!this.info && cr && !cr.satisfied && cr.size === 0) {
          // An empty object: nothing to read, but a valid open.
          return { bytes: new Uint8Array(0), start: 0, info: identityOf(h, 0) };
        }
        if (this.info)
          throw fail('ObjectChanged', `object changed since it was opened (416: range now unsatisfiable)`, { status });
      }
      if (status < 200 || status >= 300) {
        const text = await res.readText(ERROR_BODY_LIMIT).catch(() => '');
        const s3 = parseS3ErrorBody(text);
        throw fail(s3.code ?? 'HttpError', s3.message ?? `HTTP ${status}`, {
          status,
          retryable: isRetryableStatus(status),
        });
      }

      let size: number;
      let start: number;
      let end: number;
      if (status === 206) {
        const cr = parseContentRange(h['content-range']);
        if (!cr?.satisfied) {
          throw fail('BadResponse', `206 without a valid Content-Range (${h['content-range'] ?? 'none'})`, {
            status,
          });
        }
        const want = expectedSpan(range, cr.size);
        if (!want || want.start !== cr.start || want.end !== cr.end) {
          throw fail(
            'BadResponse',
            `Content-Range "bytes ${cr.start}-${cr.end}/${cr.size}" does not answer "${rangeHeader(range)}"`,
            { status },
          );
        }
        ({ start, end, size } = cr);
      } else if (status === 200) {
        // A 200 carries the whole object: acceptable only when the whole object is exactly what was asked.
        size = Number(h['content-length']);
        if (!Number.isSafeInteger(size) || size < 0)
          throw fail('BadResponse', `200 without a valid Content-Length`, { status });
        const want = expectedSpan(range, size);
        if (want?.start !== 0 || want.end !== size - 1) {
          throw fail(
            'RangeIgnored',
            `server ignored "${rangeHeader(range)}" and sent the whole object (${size} bytes)`,
            {
              status,
            },
          );
        }
        start = 0;
        end = size - 1;
      } else {
        throw fail('BadResponse', `unexpected status ${status} to a ranged GET`, { status });
      }

      const info = identityOf(h, size);
      if (this.info) {
        const problem = identityMismatch(this.info, info);
        if (problem) throw fail('ObjectChanged', `object changed since it was opened (${problem})`, { status });
      }
      const expected = end - start + 1;
      const declared = h['content-length'];
      if (declared !== undefined && Number(declared) !== expected) {
        throw fail('BadResponse', `Content-Length ${declared} but the range holds ${expected} bytes`, { status });
      }
      const parts = targets ?? [Buffer.allocUnsafe(expected)];
      await this.readExact(res, parts, expected, signal, fail);
      body = undefined;
      this.counters.bytes += expected;
      return { bytes: targets ? EMPTY : parts[0]!, start, info };
    } finally {
      // A rejected response's body is dropped with its connection: never download what we will not use.
      body?.discard();
      clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
      this.counters.inFlight--;
      this.counters.recordLatency(performance.now() - started);
    }
  }

  /** Reads a body of exactly `expected` bytes into `parts`, one after another (their lengths add up to it). */
  private async readExact(
    body: GetResponse,
    parts: readonly Uint8Array[],
    expected: number,
    signal: AbortSignal | undefined,
    fail: (code: string, message: string, extra?: { retryable?: boolean; cause?: unknown }) => SourceError,
  ): Promise<void> {
    if (parts.reduce((sum, p) => sum + p.length, 0) !== expected) {
      throw new RangeError(`${this.name}: ${expected} bytes answered into buffers of another size`);
    }
    let filled: number;
    try {
      filled = await body.readInto(parts);
    } catch (e) {
      if (e instanceof BodyOverflowError) throw fail('BadResponse', `body longer than the ${expected} bytes asked`);
      const failure = this.transportFailure(e, signal, fail);
      if (failure.code === 'Network') {
        throw fail('Truncated', `body ended after ${body.bytesRead} of ${expected} bytes`, {
          retryable: true,
          cause: e,
        });
      }
      throw failure;
    }
    if (filled < expected) {
      throw fail('Truncated', `body ended after ${filled} of ${expected} bytes`, { retryable: true });
    }
  }

  private transportFailure(
    e: unknown,
    signal: AbortSignal | undefined,
    fail: (code: string, message: string, extra?: { retryable?: boolean; cause?: unknown }) => SourceError,
  ): SourceError {
    if (e instanceof SourceError) return e;
    if (signal?.aborted) return fail('Aborted', 'read aborted by the caller', { cause: e });
    if (this.closed) return fail('Aborted', 'source closed during the read', { cause: e });
    const kind = classifyTransportError(e);
    const detail = (e as { code?: string })?.code ?? (e as Error)?.name ?? 'error';
    if (kind === 'Timeout' || kind === 'Aborted') {
      // Aborted without a caller abort means our own deadline fired: a timeout.
      return fail('Timeout', `request timed out (${detail})`, { retryable: true, cause: e });
    }
    if (kind === 'Network') {
      return fail('Network', `connection failed (${detail})`, { retryable: true, cause: e });
    }
    return fail('Network', `request failed (${detail}: ${(e as Error)?.message ?? String(e)})`, {
      retryable: true,
      cause: e,
    });
  }
}

/** A tail answer that is wrong in shape (not an error of the object): worth the explicit-range fallback. */
function isRangeFault(e: unknown): boolean {
  return e instanceof SourceError && (e.code === 'BadResponse' || e.code === 'RangeIgnored');
}

function identityOf(h: GetResponse['headers'], size: number): ObjectInfo {
  return { size, etag: h['etag'], lastModified: h['last-modified'] };
}

/** Why `seen` is not the pinned object, or undefined when it is. */
function identityMismatch(pinned: ObjectInfo, seen: ObjectInfo): string | undefined {
  if (pinned.size !== seen.size) return `size ${pinned.size} -> ${seen.size}`;
  if (pinned.etag !== undefined) {
    if (seen.etag === undefined) return 'ETag missing from the response';
    if (normalizeEtag(pinned.etag) !== normalizeEtag(seen.etag)) return `ETag ${pinned.etag} -> ${seen.etag}`;
  } else if (pinned.lastModified !== undefined && seen.lastModified !== pinned.lastModified) {
    return `Last-Modified ${pinned.lastModified} -> ${seen.lastModified}`;
  }
  return undefined;
}

function normalizeEtag(e: string): string {
  return e.replace(/^W\//, '');
}

function describeRange(r: ByteRange): string {
  return r.kind === 'span' ? `[${r.start}-${r.end}]` : `[last ${r.length} bytes]`;
}

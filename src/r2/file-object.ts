import { open, type FileHandle } from 'node:fs/promises';
import type { OpenResult, RemoteObject, TransportStats } from './types.js';

/**
 * A local file behind the `RemoteObject` interface: real positional reads that behave like ranged
 * GETs. It counts every request, can add latency (a fixed round trip plus a bandwidth term) and can
 * fail requests on demand. Tests drive the chunk cache through it; benchmarks use it to model R2
 * without a network.
 */

export interface FileObjectOptions {
  /** Added to every request, like a round trip to the store. */
  latencyMs?: number;
  /** Transfer rate per request (bytes per second); unset = instantaneous. */
  bytesPerSecond?: number;
  /** ETag reported by open(); defaults to one derived from size and mtime. */
  etag?: string;
}

export interface RequestRecord {
  kind: 'head' | 'tail' | 'fetch';
  offset: number;
  length: number;
  startedAt: number;
  endedAt?: number;
  /** How many requests were in flight, this one included, when it started. */
  concurrent: number;
  failed?: boolean;
}

/** Decides whether a request fails: return an Error to fail it, undefined to serve it. */
export type FailureRule = (request: { offset: number; length: number; kind: RequestRecord['kind'] }) => Error | undefined;

const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export class FileObject implements RemoteObject {
  readonly name: string;
  readonly size: number;
  readonly etag: string;
  /** Every request in start order; tests assert on it. */
  readonly requests: RequestRecord[] = [];
  maxConcurrent = 0;
  private inFlight = 0;
  private failures = 0;
  private bytes = 0;
  private readonly latency: Record<string, number> = {};
  private failureRule: FailureRule | undefined;
  private closed = false;

  private constructor(
    path: string,
    private readonly handle: FileHandle,
    size: number,
    etag: string,
    private readonly options: FileObjectOptions,
  ) {
    this.name = `file-object:${path}`;
    this.size = size;
    this.etag = etag;
  }

  static async open(path: string, options: FileObjectOptions = {}): Promise<FileObject> {
    const handle = await open(path, 'r');
    try {
      const st = await handle.stat();
      const etag = options.etag ?? `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
      return new FileObject(path, handle, st.size, etag, options);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /** Installs (or clears) a rule that fails matching requests, e.g. to simulate a 503 storm. */
  setFailureRule(rule: FailureRule | undefined): void {
    this.failureRule = rule;
  }

  /** Fails the next `count` requests with `error`. */
  failNext(count: number, error: Error = new Error('injected failure')): void {
    let left = count;
    this.failureRule = () => (left-- > 0 ? error : undefined);
  }

  /** Forgets recorded requests (stats counters keep running). */
  resetRequests(): void {
    this.requests.length = 0;
    this.maxConcurrent = 0;
  }

  /** Total bytes of `fetch` (and open) requests recorded since the last reset. */
  requestedBytes(): number {
    return this.requests.reduce((sum, r) => sum + r.length, 0);
  }

  async open(headBytes: number, tailBytes: number): Promise<OpenResult> {
    const headLength = Math.min(headBytes, this.size);
    const tailLength = Math.min(tailBytes, this.size);
    // Two requests in parallel, as the HTTP transports do: a range and a suffix range.
    const [head, tail] = await Promise.all([
      this.request('head', 0, headLength),
      this.request('tail', this.size - tailLength, tailLength),
    ]);
    return { info: { size: this.size, etag: this.etag }, head, tail };
  }

  fetch(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || offset + length > this.size) {
      return Promise.reject(new RangeError(`${this.name}: fetch [${offset}, +${length}) outside the object (${this.size} bytes)`));
    }
    return this.request('fetch', offset, length, signal);
  }

  stats(): TransportStats {
    return {
      requests: this.requests.length,
      bytes: this.bytes,
      retries: 0,
      failures: this.failures,
      inFlight: this.inFlight,
      latencyMs: { ...this.latency },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  private async request(kind: RequestRecord['kind'], offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.closed) throw new Error(`${this.name}: closed`);
    this.inFlight++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.inFlight);
    const record: RequestRecord = { kind, offset, length, startedAt: performance.now(), concurrent: this.inFlight };
    this.requests.push(record);
    try {
      const delay = (this.options.latencyMs ?? 0) + (this.options.bytesPerSecond ? (length / this.options.bytesPerSecond) * 1000 : 0);
      if (delay > 0) await sleep(delay, signal);
      signal?.throwIfAborted();
      const injected = this.failureRule?.({ offset, length, kind });
      if (injected) throw injected;
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await this.handle.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${this.name}: short read at ${offset + done}`);
        done += bytesRead;
      }
      this.bytes += length;
      return buf;
    } catch (e) {
      record.failed = true;
      this.failures++;
      throw e;
    } finally {
      this.inFlight--;
      record.endedAt = performance.now();
      const ms = record.endedAt - record.startedAt;
      const bucket = LATENCY_BUCKETS_MS.find((b) => ms <= b);
      const key = bucket === undefined ? 'Infinity' : String(bucket);
      this.latency[key] = (this.latency[key] ?? 0) + 1;
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

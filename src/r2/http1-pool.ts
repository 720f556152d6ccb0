import type { GetPoolOptions } from './http-get.js';
import { type BodySink, connectPlain, Http1Connection } from './http1-connection.js';
import type { ResponseHead } from './http1-head.js';
import { BodyOverflowError, copyIntoParts, type GetResponse, HttpTimeoutError } from './get-response.js';
import { takePreconnectedPlain } from './preconnect.js';

/**
 * Keep-alive connections to one plain-http origin (http1-connection.ts), at most `connections` of
 * them; further requests wait for one to come free. The most recently used idle connection is taken
 * first (its congestion window is open). A request that fails, even on an idle connection the server
 * closed just as it was taken, fails here: RangedObject's retry policy (retry.ts) decides about another
 * attempt, and counts it.
 */
export class Http1Pool {
  private readonly host: string;
  private readonly port: number;
  private readonly hostHeader: string;
  private readonly idle: Http1Connection[] = [];
  private readonly all = new Set<Http1Connection>();
  private readonly waiting: Array<{ grant(c: Http1Connection): void; reject(e: Error): void }> = [];
  private destroyed = false;

  constructor(
    private readonly origin: string,
    private readonly options: GetPoolOptions,
  ) {
    const url = new URL(origin);
    if (url.protocol !== 'http:') throw new Error(`Http1Pool is for http origins, not ${url.protocol}`);
    this.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = Number(url.port || 80);
    this.hostHeader = url.host;
  }

  async get(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<GetResponse> {
    const head = requestHead(path, this.hostHeader, headers);
    const conn = await this.acquire(signal);
    const response = await this.exchange(conn, head, signal);
    return new Http1Response(conn, response, this.options.idleTimeoutMs, signal);
  }

  /** Closes every connection; requests in flight and waiting fail. */
  destroy(): void {
    this.destroyed = true;
    for (const c of [...this.all]) c.close(connectionGone());
    for (const w of this.waiting.splice(0)) w.reject(connectionGone());
  }

  private exchange(conn: Http1Connection, head: string, signal: AbortSignal): Promise<ResponseHead> {
    const { connectTimeoutMs, headersTimeoutMs } = this.options;
    const headersTimer = setTimeout(() => {
      conn.close(new HttpTimeoutError('HEADERS_TIMEOUT', `no response headers within ${headersTimeoutMs} ms`));
    }, headersTimeoutMs);
    let connectTimer: NodeJS.Timeout | undefined;
    const onConnect = () => clearTimeout(connectTimer);
    if (conn.socket.connecting) {
      connectTimer = setTimeout(() => {
        conn.close(new HttpTimeoutError('CONNECT_TIMEOUT', `no connection within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      conn.socket.once('connect', onConnect);
    }
    const onAbort = () => conn.close(abortError());
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    return conn.request(head).finally(() => {
      clearTimeout(headersTimer);
      clearTimeout(connectTimer);
      conn.socket.off('connect', onConnect);
      signal.removeEventListener('abort', onAbort);
    });
  }

  private acquire(signal: AbortSignal): Promise<Http1Connection> {
    if (this.destroyed) return Promise.reject(connectionGone());
    const idle = this.idle.pop();
    if (idle) {
      idle.socket.ref();
      return Promise.resolve(idle);
    }
    if (this.all.size < this.options.connections) return Promise.resolve(this.connect());
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: (c: Http1Connection) => {
          signal.removeEventListener('abort', onAbort);
          resolve(c);
        },
        reject: (e: Error) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(abortError());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private connect(): Http1Connection {
    const { socket, port } = takePreconnectedPlain(this.origin) ?? connectPlain(this.host, this.port);
    const conn = new Http1Connection(socket, port);
    this.all.add(conn);
    conn.onIdle = (c) => this.release(c);
    conn.onClosed = (c) => this.forget(c);
    return conn;
  }

  private release(conn: Http1Connection): void {
    if (this.destroyed) {
      conn.close();
      return;
    }
    const next = this.waiting.shift();
    if (next) {
      next.grant(conn);
      return;
    }
    // An idle connection must not keep the process alive.
    conn.socket.unref();
    this.idle.push(conn);
  }

  private forget(conn: Http1Connection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    // The slot is free: a waiting request gets a new connection.
    if (!this.destroyed && this.waiting.length > 0 && this.all.size < this.options.connections) {
      this.waiting.shift()!.grant(this.connect());
    }
  }
}

/** A response read from an Http1Connection; once its body is read (or dropped) it lets the connection go. */
class Http1Response implements GetResponse {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>>;
  private finished = false;
  private read = 0;

  constructor(
    private readonly conn: Http1Connection,
    head: ResponseHead,
    private readonly idleTimeoutMs: number,
    private readonly signal: AbortSignal,
  ) {
    this.statusCode = head.status;
    this.headers = head.headers;
  }

  get bytesRead(): number {
    return this.finished ? this.read : this.conn.bodyBytes;
  }

  async readInto(parts: readonly Uint8Array[]): Promise<number> {
    const position = { part: 0, at: 0 };
    const skipFull = () => {
      while (position.part < parts.length && position.at === parts[position.part]!.length) {
        position.part++;
        position.at = 0;
      }
    };
    const sink: BodySink = {
      window: () => {
        skipFull();
        return position.part < parts.length ? parts[position.part]!.subarray(position.at) : undefined;
      },
      advance: (n) => {
        position.at += n;
      },
      write: (bytes) => {
        if (copyIntoParts(parts, position, bytes) > 0) throw new BodyOverflowError('body longer than its buffers');
      },
    };
    await this.drain(sink);
    return this.read;
  }

  async readText(limit: number): Promise<string> {
    const pieces: Buffer[] = [];
    let held = 0;
    const sink: BodySink = {
      window: () => undefined,
      advance: () => undefined,
      write: (bytes) => {
        pieces.push(Buffer.from(bytes));
        held += bytes.length;
      },
      satisfied: () => held >= limit,
    };
    await this.drain(sink);
    return Buffer.concat(pieces).subarray(0, limit).toString('utf8');
  }

  discard(): void {
    if (this.finished) return;
    this.finished = true;
    this.read = this.conn.bodyBytes;
    this.conn.close();
  }

  private async drain(sink: BodySink): Promise<void> {
    if (this.finished) throw new Error('response body already read');
    const conn = this.conn;
    const timer = setTimeout(() => {
      conn.close(new HttpTimeoutError('BODY_TIMEOUT', `body silent for ${this.idleTimeoutMs} ms`));
    }, this.idleTimeoutMs);
    conn.onProgress = () => timer.refresh();
    const onAbort = () => conn.close(abortError());
    this.signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (this.signal.aborted) onAbort();
      await conn.readBody(sink);
    } finally {
      this.finished = true;
      this.read = conn.bodyBytes;
      clearTimeout(timer);
      conn.onProgress = undefined;
      this.signal.removeEventListener('abort', onAbort);
    }
  }
}

/** The request head; a name or value that could break the framing is refused, never sent. */
function requestHead(path: string, host: string, headers: Record<string, string>): string {
  if (!/^[\x21-\x7e]+$/.test(path)) throw new Error('request target holds characters HTTP/1.1 cannot carry');
  let head = `GET ${path} HTTP/1.1\r\n`;
  if (!Object.keys(headers).some((k) => k.toLowerCase() === 'host')) head += `host: ${host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\0\r\n]/.test(value)) {
      throw new Error(`request header ${JSON.stringify(name)} cannot be sent`);
    }
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

function abortError(): Error {
  return new DOMException('This operation was aborted', 'AbortError');
}

function connectionGone(): Error {
  return Object.assign(new Error('connection pool is closed'), { code: 'ECONNABORTED' });
}

import type { Agent as HttpsAgent, IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { BodyOverflowError, copyIntoParts, type GetResponse, HttpTimeoutError } from './get-response.js';
import { Http1Pool } from './http1-pool.js';
import { takePreconnected } from './preconnect.js';

/** node:https (and so tls) only for an https origin: loading it costs a plain-http mount 4-10 ms. */
const loadHttps = (): typeof import('node:https') => createRequire(import.meta.url)('node:https');

/**
 * GETs on a keep-alive connection pool. Plain http goes through our own HTTP/1.1 client, whose bodies
 * land straight in the caller's buffers (http1-connection.ts says why); https through node's own
 * client (TLS decrypts into buffers of its own, so there is no copy to save that way). Neither costs
 * a mount the ~50 ms of module loading an HTTP library would at start-up.
 */
export interface GetPoolOptions {
  /** Parallel connections (so parallel GETs) to the origin; more requests queue. */
  connections: number;
  /** TCP (+ TLS) connect of one request. */
  connectTimeoutMs: number;
  /** From sending the request to its response headers. */
  headersTimeoutMs: number;
  /** Longest silence while a body arrives. */
  idleTimeoutMs: number;
}

export interface GetPool {
  /**
   * Sends a GET and resolves with the response once its headers are in; its body is the caller's to
   * read or discard. Rejects on connect or header timeouts, and at once when `signal` aborts.
   */
  get(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<GetResponse>;
  /** Closes every connection (a request in flight fails). */
  destroy(): void;
}

export function getPool(origin: string, options: GetPoolOptions): GetPool {
  const protocol = new URL(origin).protocol;
  if (protocol === 'http:') return new Http1Pool(origin, options);
  if (protocol === 'https:') return new HttpsPool(origin, options);
  throw new Error(`unsupported protocol ${protocol}`);
}

/** The agent's (undocumented in its types, public in node's docs) way of making a connection. */
interface AgentConnecting {
  createConnection(
    options: Record<string, unknown>,
    callback?: (error: Error | null, socket: Duplex) => void,
  ): Duplex | undefined;
}

/** node:https with a keep-alive agent. */
class HttpsPool implements GetPool {
  private readonly https = loadHttps();
  private readonly agent: HttpsAgent;
  private readonly host: string;
  private readonly port: number | undefined;

  constructor(
    origin: string,
    private readonly options: GetPoolOptions,
  ) {
    const url = new URL(origin);
    this.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = url.port ? Number(url.port) : undefined;
    const max = options.connections;
    this.agent = new this.https.Agent({ keepAlive: true, maxSockets: max, maxFreeSockets: max });
    // The first requests use connections opened before this module loaded, if any (preconnect.ts): the
    // agent still makes the TLS connection over the given socket, with the same handshake and checks.
    const agent = this.agent as unknown as AgentConnecting;
    const fresh = agent.createConnection.bind(agent);
    agent.createConnection = (connectOptions, callback) => {
      const socket = takePreconnected(origin);
      return socket ? fresh({ ...connectOptions, socket }, callback) : fresh(connectOptions, callback);
    };
  }

  get(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<GetResponse> {
    const { connectTimeoutMs, headersTimeoutMs, idleTimeoutMs } = this.options;
    return new Promise((resolve, reject) => {
      const req = this.https.request({
        host: this.host,
        port: this.port,
        path,
        method: 'GET',
        headers,
        agent: this.agent,
        signal,
      });
      let connectTimer: NodeJS.Timeout | undefined;
      const headersTimer = setTimeout(() => {
        req.destroy(new HttpTimeoutError('HEADERS_TIMEOUT', `no response headers within ${headersTimeoutMs} ms`));
      }, headersTimeoutMs);
      const done = (): void => {
        clearTimeout(headersTimer);
        clearTimeout(connectTimer);
      };
      req.once('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => {
          req.destroy(new HttpTimeoutError('CONNECT_TIMEOUT', `no connection within ${connectTimeoutMs} ms`));
        }, connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connectTimer));
      });
      req.once('response', (res) => {
        done();
        resolve(new IncomingResponse(res, idleTimeoutMs));
      });
      req.once('error', (e) => {
        done();
        reject(e);
      });
      req.end();
    });
  }

  destroy(): void {
    this.agent.destroy();
  }
}

/** A node:http response as a GetResponse. */
class IncomingResponse implements GetResponse {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string | undefined>>;
  bytesRead = 0;

  constructor(
    private readonly res: IncomingMessage,
    private readonly idleTimeoutMs: number,
  ) {
    this.statusCode = res.statusCode ?? 0;
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(res.headers))
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    this.headers = headers;
  }

  readInto(parts: readonly Uint8Array[]): Promise<number> {
    const position = { part: 0, at: 0 };
    return this.drain((chunk) => {
      if (copyIntoParts(parts, position, chunk) > 0) throw new BodyOverflowError('body longer than its buffers');
      return true;
    }).then(() => this.bytesRead);
  }

  async readText(limit: number): Promise<string> {
    const pieces: Buffer[] = [];
    let held = 0;
    await this.drain((chunk) => {
      pieces.push(chunk);
      held += chunk.length;
      return held < limit;
    });
    return Buffer.concat(pieces).subarray(0, limit).toString('utf8');
  }

  discard(): void {
    if (this.res.destroyed) return;
    this.res.on('error', () => undefined);
    this.res.destroy();
  }

  /** Feeds the body to `take` ('data' events: measured ~20% less CPU than an async iterator per 1 MiB GET) until it ends or `take` returns false. */
  private drain(take: (chunk: Buffer) => boolean): Promise<void> {
    const body = this.res;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        body.destroy(new HttpTimeoutError('BODY_TIMEOUT', `body silent for ${this.idleTimeoutMs} ms`));
      }, this.idleTimeoutMs);
      const finish = (e?: unknown) => {
        clearTimeout(timer);
        body.removeAllListeners('data');
        if (e === undefined) resolve();
        else reject(e);
      };
      body.on('data', (chunk: Buffer) => {
        timer.refresh();
        this.bytesRead += chunk.length;
        try {
          if (take(chunk) === false) {
            this.discard();
            finish();
          }
        } catch (e) {
          this.discard();
          finish(e);
        }
      });
      body.once('end', () => finish());
      body.once('error', (e) => finish(e));
      // A body cut short by the connection closing ends in 'aborted'/'close' without 'end'.
      body.once('close', () => {
        if (!body.complete)
          finish(Object.assign(new Error('connection closed before the body ended'), { code: 'ECONNRESET' }));
      });
    });
  }
}

import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { takePreconnected } from './preconnect.js';

/** node:https (and so tls) only for an https origin: loading it costs a plain-http mount 4-10 ms. */
const loadHttps = (): typeof import('node:https') => createRequire(import.meta.url)('node:https');

/**
 * GETs on a keep-alive connection pool, with node's own http client: it is already part of every
 * node process, where an HTTP library costs a mount ~50 ms of module loading at start-up (measured),
 * and for the large ranged GETs of a mount its CPU per request is not what limits.
 */
export interface GetPoolOptions {
  /** Parallel connections (so parallel GETs) to the origin; more requests queue. */
  connections: number;
  /** TCP (+ TLS) connect of one request. */
  connectTimeoutMs: number;
  /** From sending the request to its response headers. */
  headersTimeoutMs: number;
  /** Longest silence while a body arrives (see bodyIdleTimer). */
  idleTimeoutMs: number;
}

/** The agent's (undocumented in its types, public in node's docs) way of making a connection. */
interface AgentConnecting {
  createConnection(options: Record<string, unknown>, callback?: (error: Error | null, socket: Duplex) => void): Duplex | undefined;
}

/** A failure of the exchange itself, with a code that classifyTransportError (errors.ts) knows. */
export class HttpTimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(
    readonly code: 'CONNECT_TIMEOUT' | 'HEADERS_TIMEOUT' | 'BODY_TIMEOUT',
    message: string,
  ) {
    super(message);
  }
}

export class GetPool {
  private readonly agent: HttpAgent;
  private readonly send: typeof httpRequest;
  private readonly host: string;
  private readonly port: number | undefined;

  constructor(
    origin: string,
    readonly options: GetPoolOptions,
  ) {
    const url = new URL(origin);
    const secure = url.protocol === 'https:';
    if (!secure && url.protocol !== 'http:') throw new Error(`unsupported protocol ${url.protocol}`);
    this.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = url.port ? Number(url.port) : undefined;
    const agentOptions = { keepAlive: true, maxSockets: options.connections, maxFreeSockets: options.connections };
    const https = secure ? loadHttps() : undefined;
    this.agent = https ? new https.Agent(agentOptions) : new HttpAgent(agentOptions);
    this.send = https ? https.request : httpRequest;
    // The first requests use connections opened before this module loaded, if any (preconnect.ts). For
    // https the agent still makes the TLS connection, over the given socket: same handshake and checks.
    const agent = this.agent as unknown as AgentConnecting;
    const fresh = agent.createConnection.bind(agent);
    agent.createConnection = (connectOptions, callback) => {
      const socket = takePreconnected(origin);
      if (!socket) return fresh(connectOptions, callback);
      return https ? fresh({ ...connectOptions, socket }, callback) : socket;
    };
  }

  /**
   * Sends a GET and resolves with the response once its headers are in; the body is the caller's to
   * read (or destroy, which drops the connection). Rejects on connect or header timeouts, and at once
   * when `signal` aborts.
   */
  get(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.send({ host: this.host, port: this.port, path, method: 'GET', headers, agent: this.agent, signal });
      let connectTimer: NodeJS.Timeout | undefined;
      const headersTimer = setTimeout(() => {
        req.destroy(new HttpTimeoutError('HEADERS_TIMEOUT', `no response headers within ${this.options.headersTimeoutMs} ms`));
      }, this.options.headersTimeoutMs);
      const done = (): void => {
        clearTimeout(headersTimer);
        clearTimeout(connectTimer);
      };
      req.once('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => {
          req.destroy(new HttpTimeoutError('CONNECT_TIMEOUT', `no connection within ${this.options.connectTimeoutMs} ms`));
        }, this.options.connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connectTimer));
      });
      req.once('response', (res) => {
        done();
        resolve(res);
      });
      req.once('error', (e) => {
        done();
        reject(e);
      });
      req.end();
    });
  }

  /** Closes every connection (a request in flight fails). */
  destroy(): void {
    this.agent.destroy();
  }
}

/**
 * Fails a body that stays silent for `ms`: call `touch()` on every chunk, `stop()` at the end. One
 * timer per body, re-armed in place (Timeout.refresh), so a chunk costs next to nothing.
 */
export function bodyIdleTimer(body: IncomingMessage, ms: number): { touch(): void; stop(): void } {
  const timer = setTimeout(() => {
    body.destroy(new HttpTimeoutError('BODY_TIMEOUT', `body silent for ${ms} ms`));
  }, ms);
  return { touch: () => timer.refresh(), stop: () => clearTimeout(timer) };
}

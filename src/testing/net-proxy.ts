import { createServer, connect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * A TCP proxy for tests and benchmarks: it sits in front of a local server and models a network
 * (this kernel has no netem). Each direction of each connection is a link with a one-way delay of
 * rttMs/2 and an optional bandwidth cap, so the round trip is rttMs and a stream is paced at the cap.
 *
 * Latency is modelled without serialising throughput: a chunk is stamped with the time it leaves
 * the (virtual) wire and queued; a timer delivers every chunk whose time has come. Many chunks are in
 * flight at once, exactly like packets on a long pipe.
 *
 * It also counts what passes (connections, bytes each way, HTTP requests parsed from the client's
 * stream) and injects faults for hardening tests: refuse connects, reset or truncate after N bytes
 * towards the client, stall.
 */

export interface NetProfile {
  /** Round-trip time added by the proxy (each direction gets half). */
  rttMs: number;
  /** Per-connection, per-direction cap in bytes per second; 0 or undefined = unlimited. */
  bandwidthBytesPerSec?: number;
  /**
   * Round trips a new connection costs before its first request gets through (TCP handshake = 1,
   * TLS adds 1-2). Default 1. Modelled by holding the client's first bytes back.
   */
  handshakeRtts?: number;
}

export interface NetFaults {
  /** New connections are closed at once ('close', or true) or reset ('reset'). */
  refuseConnections?: boolean | 'close' | 'reset';
  /** Reset (RST) a connection after this many bytes were delivered to the client. */
  resetAfterBytes?: number;
  /** Close (FIN) a connection after this many bytes were delivered to the client: a response cut short. */
  truncateAfterBytes?: number;
  /** Stop delivering to the client after this many bytes (the connection stays open). */
  stallAfterBytes?: number;
  /** How long a stall lasts; undefined = until faults are changed or the proxy closes. */
  stallMs?: number;
  /** How many times faults may trigger (one per connection) before they disarm; default unlimited. */
  times?: number;
}

export interface ProxyRequestRecord {
  /** performance.now() of the proxy's process when the request head reached the server. */
  atMs: number;
  connection: number;
  method: string;
  target: string;
  /** The Range header, if any. */
  range?: string;
}

export interface ProxyStats {
  connectionsAccepted: number;
  connectionsOpen: number;
  /** Client -> server bytes delivered. */
  bytesUp: number;
  /** Server -> client bytes delivered (what the client "fetched", headers included). */
  bytesDown: number;
  requests: number;
  requestsByMethod: Record<string, number>;
  /** Sum of the lengths of `Range: bytes=a-b` headers of GETs (closed ranges only). */
  rangeBytesRequested: number;
  faultsTriggered: number;
  /** The most recent requests (capped), for diagnosis. */
  log: ProxyRequestRecord[];
}

export interface ProxyOptions {
  target: { host: string; port: number };
  rttMs?: number;
  bandwidthBytesPerSec?: number;
  handshakeRtts?: number;
  faults?: NetFaults;
  /** How many request records `stats().log` keeps (default 100,000). */
  logLimit?: number;
}

export interface NetProxy {
  port: number;
  /** http://127.0.0.1:<port> */
  url: string;
  setProfile(profile: NetProfile): void;
  setFaults(faults: NetFaults | undefined): void;
  stats(): ProxyStats;
  resetStats(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** Chunks are split so pacing is smooth and a fault can cut at any byte. */
const MAX_PIECE = 16 * 1024;
/** A late timer delivers everything due within this slack, so 1 ms timer granularity costs nothing. */
const TIMER_SLACK_MS = 0.5;

export async function startProxy(options: ProxyOptions): Promise<NetProxy> {
  let profile: NetProfile = {
    rttMs: options.rttMs ?? 0,
    bandwidthBytesPerSec: options.bandwidthBytesPerSec,
    handshakeRtts: options.handshakeRtts,
  };
  validateProfile(profile);
  let faults: ArmedFaults | undefined = arm(options.faults);
  const logLimit = options.logLimit ?? 100_000;
  let stats = emptyStats();
  const connections = new Set<Connection>();
  let nextConnectionId = 1;

  const ctx: ProxyContext = {
    profile: () => profile,
    faults: () => faults,
    stats: () => stats,
    onFaultTriggered: () => {
      stats.faultsTriggered++;
      if (faults && --faults.remaining <= 0) faults = undefined;
    },
    onRequest: (rec) => {
      stats.requests++;
      stats.requestsByMethod[rec.method] = (stats.requestsByMethod[rec.method] ?? 0) + 1;
      if (rec.method === 'GET' && rec.range) stats.rangeBytesRequested += closedRangeLength(rec.range);
      stats.log.push({ ...rec, atMs: performance.now() });
      if (stats.log.length > logLimit) stats.log.splice(0, stats.log.length - logLimit);
    },
  };

  const server: Server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    stats.connectionsAccepted++;
    const refuse = faults?.refuseConnections;
    if (refuse) {
      ctx.onFaultTriggered();
      if (refuse === 'reset') client.resetAndDestroy();
      else client.destroy();
      return;
    }
    const conn = new Connection(nextConnectionId++, client, options.target, ctx);
    connections.add(conn);
    stats.connectionsOpen++;
    conn.onClose = () => {
      connections.delete(conn);
      stats.connectionsOpen--;
    };
  });
  server.on('error', () => {
    // accept errors (EMFILE...) must not crash the test process
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    setProfile(p) {
      validateProfile(p);
      profile = { ...p };
    },
    setFaults(f) {
      faults = arm(f);
      for (const c of connections) c.rebaseFaultCounters();
    },
    stats: () => ({ ...stats, requestsByMethod: { ...stats.requestsByMethod }, log: [...stats.log] }),
    resetStats() {
      const open = stats.connectionsOpen;
      stats = emptyStats();
      stats.connectionsOpen = open;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.destroy();
        server.close(() => resolve());
      }),
  };
}

interface ArmedFaults extends NetFaults {
  remaining: number;
}

interface ProxyContext {
  profile(): NetProfile;
  faults(): ArmedFaults | undefined;
  stats(): ProxyStats;
  onFaultTriggered(): void;
  onRequest(rec: Omit<ProxyRequestRecord, 'atMs'>): void;
}

function arm(f: NetFaults | undefined): ArmedFaults | undefined {
  if (!f) return undefined;
  const active = Object.entries(f).some(([k, v]) => k !== 'times' && k !== 'stallMs' && v !== undefined && v !== false);
  return active ? { ...f, remaining: f.times ?? Infinity } : undefined;
}

function validateProfile(p: NetProfile): void {
  if (!Number.isFinite(p.rttMs) || p.rttMs < 0) throw new Error(`rttMs must be a non-negative number, got ${p.rttMs}`);
  const bw = p.bandwidthBytesPerSec;
  if (bw !== undefined && (!Number.isFinite(bw) || bw < 0)) {
    throw new Error(`bandwidthBytesPerSec must be a non-negative number, got ${bw}`);
  }
  const h = p.handshakeRtts;
  if (h !== undefined && (!Number.isFinite(h) || h < 0)) throw new Error(`handshakeRtts must be >= 0, got ${h}`);
}

function emptyStats(): ProxyStats {
  return {
    connectionsAccepted: 0,
    connectionsOpen: 0,
    bytesUp: 0,
    bytesDown: 0,
    requests: 0,
    requestsByMethod: {},
    rangeBytesRequested: 0,
    faultsTriggered: 0,
    log: [],
  };
}

function closedRangeLength(range: string): number {
  const m = /^bytes=(\d+)-(\d+)$/.exec(range.trim());
  return m ? Number(m[2]) - Number(m[1]) + 1 : 0;
}

/** One client connection and its upstream connection, joined by two delayed links. */
class Connection {
  onClose: () => void = () => {};
  private readonly server: Socket;
  private readonly up: DelayedLink;
  private readonly down: DelayedLink;
  private closed = false;
  /** Bytes delivered to the client when the current faults were armed. */
  private downAtArm = 0;
  private faultTriggered = false;

  constructor(
    readonly id: number,
    private readonly client: Socket,
    target: { host: string; port: number },
    private readonly ctx: ProxyContext,
  ) {
    this.server = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const requests = new HttpRequestScanner((method, reqTarget, range) =>
      ctx.onRequest({ connection: id, method, target: reqTarget, range }),
    );
    this.up = new DelayedLink(client, this.server, ctx.profile, (chunk) => {
      ctx.stats().bytesUp += chunk.length;
      requests.push(chunk);
      return { deliver: chunk.length };
    });
    this.down = new DelayedLink(this.server, client, ctx.profile, (chunk) => this.checkDownFaults(chunk));
    this.down.onDelivered = (n) => (ctx.stats().bytesDown += n);
    const { rttMs, handshakeRtts } = ctx.profile();
    this.up.holdUntil(performance.now() + rttMs * (handshakeRtts ?? 1));

    for (const s of [client, this.server]) {
      s.setNoDelay(true);
      s.on('error', () => this.destroy());
      // Half-open on both sides: a side that ends cleanly still gets what is on the wire towards it;
      // the pair is done once both sockets are closed.
      s.on('close', () => {
        if (client.destroyed && this.server.destroyed) this.destroy();
      });
    }
    // Data only flows once the upstream connection is there; a refused upstream closes the client.
    this.server.once('connect', () => client.resume());
  }

  rebaseFaultCounters(): void {
    this.downAtArm = this.down.delivered;
    this.faultTriggered = false;
    this.down.unstall();
  }

  /** Decides how much of a chunk about to reach the client goes through, and what happens next. */
  private checkDownFaults(chunk: Buffer): LinkDecision {
    const f = this.ctx.faults();
    if (!f || this.faultTriggered) return { deliver: chunk.length };
    const sent = this.down.delivered - this.downAtArm;
    const limits: [number | undefined, FaultAction][] = [
      [f.resetAfterBytes, 'reset'],
      [f.truncateAfterBytes, 'end'],
      [f.stallAfterBytes, 'stall'],
    ];
    let best: { at: number; action: FaultAction } | undefined;
    for (const [limit, action] of limits) {
      if (limit === undefined || sent + chunk.length < limit) continue;
      if (!best || limit < best.at) best = { at: limit, action };
    }
    if (!best) return { deliver: chunk.length };
    this.faultTriggered = true;
    this.ctx.onFaultTriggered();
    const deliver = Math.max(0, best.at - sent);
    if (best.action === 'reset') return { deliver, after: () => this.reset() };
    if (best.action === 'end') return { deliver, after: () => this.truncate() };
    return { deliver, after: () => this.down.stall(f.stallMs) };
  }

  private reset(): void {
    if (this.closed) return;
    this.up.stop();
    this.down.stop();
    this.server.destroy();
    // RST once the delivered bytes have reached the client: an RST that lands together with data
    // makes Linux report a plain EOF to the reader instead of ECONNRESET.
    this.client.write(Buffer.alloc(0), () =>
      setTimeout(() => {
        if (!this.client.destroyed) this.client.resetAndDestroy();
        this.destroy();
      }, 5),
    );
  }

  private truncate(): void {
    if (this.closed) return;
    this.client.end();
    this.server.destroy();
    this.up.stop();
    this.down.stop();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.up.stop();
    this.down.stop();
    this.client.destroy();
    this.server.destroy();
    this.onClose();
  }
}

type FaultAction = 'reset' | 'end' | 'stall';

interface LinkDecision {
  /** How many bytes of the chunk to deliver. */
  deliver: number;
  /** What to do right after delivering them. */
  after?: () => void;
}

interface QueuedPiece {
  data: Buffer | null; // null = the sender ended (FIN)
  dueAt: number;
}

/**
 * One direction of a connection. `push` stamps each piece with the time it arrives at the far end:
 * it starts transmitting when the link is free (bandwidth), then travels rtt/2 (latency).
 */
class DelayedLink {
  delivered = 0;
  onDelivered: (n: number) => void = () => {};
  private readonly queue: QueuedPiece[] = [];
  private queuedBytes = 0;
  private linkFreeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private stalled = false;
  private stallTimer: NodeJS.Timeout | undefined;
  private pausedForQueue = false;
  private pausedForDrain = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly profile: () => NetProfile,
    private readonly beforeDeliver: (chunk: Buffer) => LinkDecision,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.pushEnd());
    to.on('drain', () => {
      this.pausedForDrain = false;
      this.updateFlow();
    });
  }

  /** Nothing leaves before `t` (a connection's handshake). */
  holdUntil(t: number): void {
    this.linkFreeAt = Math.max(this.linkFreeAt, t);
  }

  private push(chunk: Buffer): void {
    if (this.stopped) return;
    const now = performance.now();
    const { rttMs, bandwidthBytesPerSec: bw } = this.profile();
    for (let off = 0; off < chunk.length; off += MAX_PIECE) {
      const piece = chunk.subarray(off, Math.min(chunk.length, off + MAX_PIECE));
      const start = Math.max(now, this.linkFreeAt);
      this.linkFreeAt = bw ? start + (piece.length * 1000) / bw : start;
      this.queue.push({ data: piece, dueAt: this.linkFreeAt + rttMs / 2 });
      this.queuedBytes += piece.length;
    }
    this.updateFlow();
    this.schedule();
  }

  private pushEnd(): void {
    if (this.stopped) return;
    const now = performance.now();
    this.queue.push({ data: null, dueAt: Math.max(now, this.linkFreeAt) + this.profile().rttMs / 2 });
    this.schedule();
  }

  /** Enough queued to keep the link busy for its delay plus a margin; more would only use memory. */
  private highWater(): number {
    const { rttMs, bandwidthBytesPerSec: bw } = this.profile();
    const bdp = (bw || 1e9) * ((rttMs / 2 + 50) / 1000);
    return Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, bdp));
  }

  private updateFlow(): void {
    if (this.stopped) return;
    this.pausedForQueue = this.queuedBytes > this.highWater();
    if (this.pausedForQueue || this.pausedForDrain || this.stalled) this.from.pause();
    else this.from.resume();
  }

  private schedule(): void {
    if (this.timer || this.stopped || this.stalled || this.queue.length === 0) return;
    const wait = Math.max(0, this.queue[0]!.dueAt - performance.now());
    this.timer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    const horizon = performance.now() + TIMER_SLACK_MS;
    while (!this.stopped && !this.stalled && this.queue.length > 0 && this.queue[0]!.dueAt <= horizon) {
      const piece = this.queue[0]!;
      if (piece.data === null) {
        this.queue.shift();
        this.to.end();
        continue;
      }
      const decision = this.beforeDeliver(piece.data);
      const out = decision.deliver >= piece.data.length ? piece.data : piece.data.subarray(0, decision.deliver);
      // What a fault held back stays at the head (a stall resumes with it).
      if (out.length === piece.data.length) this.queue.shift();
      else piece.data = piece.data.subarray(out.length);
      this.queuedBytes -= out.length;
      if (out.length > 0) {
        this.delivered += out.length;
        this.onDelivered(out.length);
        if (!this.to.write(out)) this.pausedForDrain = true;
      }
      if (typeof decision.after === 'function') {
        decision.after();
        if (this.stopped || this.stalled) break;
      }
    }
    this.updateFlow();
    this.schedule();
  }

  stall(ms: number | undefined): void {
    this.stalled = true;
    this.from.pause();
    if (ms !== undefined) this.stallTimer = setTimeout(() => this.unstall(), ms);
  }

  unstall(): void {
    if (!this.stalled) return;
    this.stalled = false;
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.updateFlow();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.timer = this.stallTimer = undefined;
    this.queue.length = 0;
  }
}

/**
 * Finds HTTP/1.1 request heads in a client's byte stream (keep-alive, pipelining, bodies framed by
 * Content-Length or chunked). Counting only: if the stream stops looking like HTTP it goes quiet.
 */
class HttpRequestScanner {
  private buf: Buffer = Buffer.alloc(0);
  private state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'trailer' | 'lost' = 'head';
  private remaining = 0;

  constructor(private readonly onRequest: (method: string, target: string, range?: string) => void) {}

  push(chunk: Buffer): void {
    if (this.state === 'lost') return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.step()) {
      // each step consumes something or returns false when it needs more bytes
    }
    if (this.buf.length > 256 * 1024 && this.state !== 'body' && this.state !== 'chunk-data') this.state = 'lost';
  }

  private step(): boolean {
    switch (this.state) {
      case 'head': {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) return false;
        const head = this.buf.subarray(0, end).toString('latin1');
        this.buf = this.buf.subarray(end + 4);
        const [requestLine, ...headerLines] = head.split('\r\n');
        const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine ?? '');
        if (!m) {
          this.state = 'lost';
          return false;
        }
        const headers = new Map<string, string>();
        for (const line of headerLines) {
          const i = line.indexOf(':');
          if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
        }
        this.onRequest(m[1]!, m[2]!, headers.get('range'));
        if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) this.state = 'chunk-size';
        else {
          this.remaining = Number(headers.get('content-length') ?? 0) || 0;
          this.state = this.remaining > 0 ? 'body' : 'head';
        }
        return true;
      }
      case 'body':
      case 'chunk-data': {
        if (this.buf.length === 0) return false;
        const n = Math.min(this.remaining, this.buf.length);
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.remaining === 0) this.state = this.state === 'body' ? 'head' : 'chunk-size';
        return true;
      }
      case 'chunk-size': {
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return false;
        const line = this.buf.subarray(0, eol).toString('latin1');
        this.buf = this.buf.subarray(eol + 2);
        if (line === '') return true; // CRLF after a chunk's data
        const size = parseInt(line.split(';')[0]!, 16);
        if (!Number.isFinite(size)) {
          this.state = 'lost';
          return false;
        }
        if (size === 0) this.state = 'trailer';
        else {
          this.remaining = size;
          this.state = 'chunk-data';
        }
        return true;
      }
      case 'trailer': {
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return false;
        const line = this.buf.subarray(0, eol);
        this.buf = this.buf.subarray(eol + 2);
        if (line.length === 0) this.state = 'head';
        return true;
      }
      default:
        return false;
    }
  }
}

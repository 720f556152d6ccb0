import { afterEach, describe, expect, it } from 'vitest';
import { createServer as createNetServer, connect, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer, request, Agent, type IncomingMessage } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startProxy, type NetProxy } from '../../src/testing/net-proxy.js';

// Timing bounds are deliberately loose: these run on a shared, loaded 2-core machine.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

/** Echo server: sends back everything it receives, ends when the client ends. */
async function echoServer(): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  return { port: await listen(server), server, sockets };
}

/** Server that writes `payload` to every connection and ends. */
async function blobServer(payload: Buffer): Promise<number> {
  const server = createNetServer((s) => {
    s.on('error', () => {});
    s.end(payload);
  });
  return listen(server);
}

async function proxyTo(port: number, opts: Partial<Parameters<typeof startProxy>[0]> = {}): Promise<NetProxy> {
  const proxy = await startProxy({ target: { host: '127.0.0.1', port }, ...opts });
  cleanups.push(() => proxy.close());
  return proxy;
}

/** Connects, optionally writes, collects everything until end/close; reports how it ended. */
function collect(
  port: number,
  write?: Buffer,
): Promise<{ data: Buffer; ended: 'end' | 'error'; error?: string; firstByteMs: number; totalMs: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let firstByteMs = -1;
    const parts: Buffer[] = [];
    const s = connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (ended: 'end' | 'error', error?: string) => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ data: Buffer.concat(parts), ended, error, firstByteMs, totalMs: performance.now() - t0 });
    };
    s.on('data', (d) => {
      if (firstByteMs < 0) firstByteMs = performance.now() - t0;
      parts.push(d);
    });
    s.on('end', () => finish('end'));
    s.on('error', (e: NodeJS.ErrnoException) => finish('error', e.code));
    s.on('close', () => finish('end'));
    if (write) s.end(write);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('net-proxy', () => {
  it('passes bytes through unchanged in both directions', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, { rttMs: 10, bandwidthBytesPerSec: 50e6 });
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    const got = await collect(proxy.port, payload);
    expect(got.data.length).toBe(payload.length);
    expect(sha(got.data)).toBe(sha(payload));
    const st = proxy.stats();
    expect(st.bytesUp).toBe(payload.length);
    expect(st.bytesDown).toBe(payload.length);
  });

  it('adds the configured round trip to a request/response exchange', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, { rttMs: 120, handshakeRtts: 0 });
    const s = connect({ host: '127.0.0.1', port: proxy.port });
    cleanups.push(() => void s.destroy());
    await new Promise((r) => s.once('connect', r));
    const rtts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      s.write('ping');
      await new Promise((r) => s.once('data', r));
      rtts.push(performance.now() - t0);
    }
    for (const rtt of rtts) {
      expect(rtt).toBeGreaterThanOrEqual(115);
      expect(rtt).toBeLessThan(600);
    }
  });

  it('charges a new connection one handshake round trip by default', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, { rttMs: 100 });
    const got = await collect(proxy.port, Buffer.from('hello'));
    // handshake (1 RTT) + the exchange (1 RTT)
    expect(got.firstByteMs).toBeGreaterThanOrEqual(195);
    expect(got.firstByteMs).toBeLessThan(900);
  });

  it('delays without serialising throughput: a long transfer takes about one delay, not one per chunk', async () => {
    const payload = randomBytes(8 * 1024 * 1024);
    const port = await blobServer(payload);
    const proxy = await proxyTo(port, { rttMs: 200, handshakeRtts: 0 });
    const got = await collect(proxy.port);
    expect(sha(got.data)).toBe(sha(payload));
    // 512 pieces of 16 KiB: serial sleeping would take ~51 s.
    expect(got.firstByteMs).toBeGreaterThanOrEqual(95);
    expect(got.totalMs).toBeLessThan(3000);
  });

  it('caps bandwidth per connection, not across connections', async () => {
    const payload = randomBytes(1_000_000);
    const port = await blobServer(payload);
    const proxy = await proxyTo(port, { rttMs: 0, bandwidthBytesPerSec: 1_000_000 });
    const t0 = performance.now();
    const results = await Promise.all([collect(proxy.port), collect(proxy.port)]);
    const elapsed = performance.now() - t0;
    for (const r of results) expect(sha(r.data)).toBe(sha(payload));
    // Each stream alone needs ~1 s at 1 MB/s; a shared cap would need ~2 s.
    expect(elapsed).toBeGreaterThanOrEqual(850);
    expect(elapsed).toBeLessThan(1900);
  });

  it('setProfile changes the delay for later traffic', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, { rttMs: 0, handshakeRtts: 0 });
    const fast = await collect(proxy.port, Buffer.from('x'));
    proxy.setProfile({ rttMs: 150, handshakeRtts: 0 });
    const slow = await collect(proxy.port, Buffer.from('x'));
    expect(fast.firstByteMs).toBeLessThan(100);
    expect(slow.firstByteMs).toBeGreaterThanOrEqual(145);
    expect(() => proxy.setProfile({ rttMs: -1 })).toThrow(/rttMs/);
  });

  it('counts HTTP requests by method and the ranges of GETs', async () => {
    const http = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const port = await listen(http);
    const proxy = await proxyTo(port, { rttMs: 2 });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const send = (method: string, headers: Record<string, string>, body?: Buffer) =>
      new Promise<string>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: proxy.port, method, path: '/b/k', headers, agent },
          (res: IncomingMessage) => {
            const parts: Buffer[] = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => resolve(Buffer.concat(parts).toString()));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    await send('GET', { range: 'bytes=0-4095' });
    await send('PUT', { 'content-length': '70000' }, randomBytes(70000));
    await send('PUT', {}, randomBytes(5000)); // chunked body
    await send('GET', { range: 'bytes=100-199' });
    await send('HEAD', {});
    const st = proxy.stats();
    expect(st.requestsByMethod).toEqual({ GET: 2, PUT: 2, HEAD: 1 });
    expect(st.requests).toBe(5);
    expect(st.rangeBytesRequested).toBe(4096 + 100);
    expect(st.connectionsAccepted).toBe(1);
    expect(st.log.map((r) => r.range).filter(Boolean)).toEqual(['bytes=0-4095', 'bytes=100-199']);
    proxy.resetStats();
    expect(proxy.stats().requests).toBe(0);
  });

  it('resets a connection after N bytes, once when times=1', async () => {
    const payload = randomBytes(200_000);
    const port = await blobServer(payload);
    const proxy = await proxyTo(port, { faults: { resetAfterBytes: 50_000, times: 1 } });
    const first = await collect(proxy.port);
    expect(first.ended).toBe('error');
    expect(first.error).toBe('ECONNRESET');
    expect(first.data.length).toBeLessThanOrEqual(50_000);
    expect(payload.subarray(0, first.data.length).equals(first.data)).toBe(true);
    const second = await collect(proxy.port);
    expect(second.data.equals(payload)).toBe(true);
    expect(proxy.stats().faultsTriggered).toBe(1);
  });

  it('truncates a response: exactly N bytes then a clean end', async () => {
    const payload = randomBytes(100_000);
    const port = await blobServer(payload);
    const proxy = await proxyTo(port, { faults: { truncateAfterBytes: 12_345 } });
    const got = await collect(proxy.port);
    expect(got.ended).toBe('end');
    expect(got.data.equals(payload.subarray(0, 12_345))).toBe(true);
  });

  it('stalls after N bytes for stallMs, then carries on', async () => {
    const payload = randomBytes(100_000);
    const port = await blobServer(payload);
    const proxy = await proxyTo(port, { faults: { stallAfterBytes: 1000, stallMs: 400 } });
    const got = await collect(proxy.port);
    expect(got.data.equals(payload)).toBe(true);
    expect(got.totalMs).toBeGreaterThanOrEqual(390);
  });

  it('a stall without stallMs lasts until faults change', async () => {
    const payload = randomBytes(10_000);
    const port = await blobServer(payload);
    const proxy = await proxyTo(port, { faults: { stallAfterBytes: 0 } });
    const pending = collect(proxy.port);
    const early = await Promise.race([
      pending.then(() => 'done'),
      new Promise((r) => setTimeout(() => r('waiting'), 300)),
    ]);
    expect(early).toBe('waiting');
    proxy.setFaults(undefined);
    const got = await pending;
    expect(got.data.equals(payload)).toBe(true);
  });

  it('refuses connections by closing or resetting them', async () => {
    const port = await blobServer(Buffer.from('never seen'));
    const proxy = await proxyTo(port, { faults: { refuseConnections: 'reset' } });
    const reset = await collect(proxy.port);
    expect(reset.data.length).toBe(0);
    expect(reset.ended).toBe('error');
    proxy.setFaults({ refuseConnections: true });
    const closed = await collect(proxy.port);
    expect(closed.data.length).toBe(0);
    proxy.setFaults(undefined);
    const ok = await collect(proxy.port);
    expect(ok.data.toString()).toBe('never seen');
  });

  it('close() destroys every connection and stops listening', async () => {
    const echo = await echoServer();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, rttMs: 5 });
    const clients = [0, 1, 2].map(() => connect({ host: '127.0.0.1', port: proxy.port }));
    for (const c of clients) c.on('error', () => {});
    await Promise.all(clients.map((c) => new Promise((r) => c.once('connect', r))));
    for (const c of clients) c.write('x');
    await Promise.all(clients.map((c) => new Promise((r) => c.once('data', r))));
    expect(proxy.stats().connectionsOpen).toBe(3);
    expect(echo.sockets.size).toBe(3);
    await proxy.close();
    await Promise.all(clients.map((c) => (c.destroyed ? null : new Promise((r) => c.once('close', r)))));
    const deadline = Date.now() + 2000;
    while (echo.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(echo.sockets.size).toBe(0);
    expect(proxy.stats().connectionsOpen).toBe(0);
    const after = await collect(proxy.port);
    expect(after.ended).toBe('error');
    expect(after.error).toBe('ECONNREFUSED');
  });
});

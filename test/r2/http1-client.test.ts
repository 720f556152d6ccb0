import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BodyOverflowError } from '../../src/r2/get-response.js';
import { getPool } from '../../src/r2/http-get.js';
import { bodyFraming, ChunkedDecoder, keepsAlive, parseResponseHead, ProtocolError } from '../../src/r2/http1-head.js';

/** Our HTTP/1.1 client (plain http) against a TCP server that answers exactly the bytes a test scripts. */

const OPTIONS = { connections: 2, connectTimeoutMs: 2000, headersTimeoutMs: 2000, idleTimeoutMs: 500 };
const signal = () => new AbortController().signal;

describe('response head and framing', () => {
  it('parses a head, joins repeated headers and finds where the body starts', () => {
    const bytes = Buffer.from('HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello');
    const head = parseResponseHead(bytes)!;
    expect(head).toMatchObject({ status: 206, minorVersion: 1, headers: { 'content-length': '5', 'x-a': '1, 2' } });
    expect(bytes.subarray(head.length).toString()).toBe('hello');
    expect(bodyFraming(head)).toEqual({ kind: 'length', bytes: 5 });
    expect(keepsAlive(head, bodyFraming(head))).toBe(true);
    expect(parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Le'))).toBeUndefined();
  });

  it('refuses what could be read two ways', () => {
    const bad = [
      'HTTP/1.1 2000 OK\r\n\r\n',
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n', // space before the colon
      'HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n', // obsolete line folding
    ];
    for (const text of bad) expect(() => parseResponseHead(Buffer.from(text)), text).toThrow(ProtocolError);
    const twoLengths = parseResponseHead(
      Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n'),
    )!;
    expect(() => bodyFraming(twoLengths)).toThrow(ProtocolError);
    const sameTwice = parseResponseHead(
      Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n'),
    )!;
    expect(bodyFraming(sameTwice)).toEqual({ kind: 'length', bytes: 5 });
    expect(() => parseResponseHead(Buffer.alloc(70_000, 0x41))).toThrow(/longer than/);
  });

  it('knows bodies delimited by chunks, by the close, and none', () => {
    const framing = (text: string) => bodyFraming(parseResponseHead(Buffer.from(text))!);
    expect(framing('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n')).toEqual({
      kind: 'chunked',
    });
    expect(framing('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n')).toEqual({ kind: 'close' });
    expect(framing('HTTP/1.1 200 OK\r\n\r\n')).toEqual({ kind: 'close' });
    expect(framing('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n')).toEqual({ kind: 'none' });
    const head10 = parseResponseHead(Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n'))!;
    expect(keepsAlive(head10, bodyFraming(head10))).toBe(false);
  });

  it('decodes a chunked body fed one byte at a time, and stops at its end', () => {
    const wire = Buffer.from('5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT');
    const decoder = new ChunkedDecoder();
    const out: Buffer[] = [];
    let used = 0;
    for (let i = 0; i < wire.length && !decoder.done; i++)
      used += decoder.feed(wire.subarray(i, i + 1), (d) => out.push(Buffer.from(d)));
    expect(Buffer.concat(out).toString()).toBe('hello world');
    expect(decoder.done).toBe(true);
    expect(wire.subarray(used).toString()).toBe('NEXT');
    expect(() => new ChunkedDecoder().feed(Buffer.from('zz\r\n'), () => undefined)).toThrow(ProtocolError);
    expect(() => new ChunkedDecoder().feed(Buffer.from('2\r\nabc\r\n'), () => undefined)).toThrow(
      /longer than its size/,
    );
  });
});

describe('HTTP/1.1 GET pool', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
  });

  /** A server whose every request (split at the blank line) is answered by `answer`. */
  async function serve(
    answer: (socket: Socket, request: string, index: number) => void,
  ): Promise<{ origin: string; connections: () => number; requests: string[] }> {
    let connections = 0;
    const requests: string[] = [];
    server = createServer((socket) => {
      connections++;
      let pending = '';
      socket.on('data', (d) => {
        pending += d.toString('latin1');
        for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
          const request = pending.slice(0, end);
          pending = pending.slice(end + 4);
          requests.push(request);
          answer(socket, request, requests.length - 1);
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return {
      origin: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
      connections: () => connections,
      requests,
    };
  }

  it('reads bodies into the given buffers across part boundaries, and reuses the connection', async () => {
    const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const s = await serve((socket) => {
      socket.write(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\n\r\n`);
      // In pieces, so reads land in several parts and windows.
      for (let at = 0; at < body.length; at += 70_001) socket.write(body.subarray(at, at + 70_001));
    });
    const pool = getPool(s.origin, OPTIONS);
    try {
      for (let round = 0; round < 3; round++) {
        const parts = [Buffer.alloc(100_000), Buffer.alloc(1), Buffer.alloc(0), Buffer.alloc(199_999)];
        const res = await pool.get('/obj', { range: 'bytes=0-299999' }, signal());
        expect(res.statusCode).toBe(206);
        expect(await res.readInto(parts)).toBe(body.length);
        expect(Buffer.concat(parts).equals(body)).toBe(true);
      }
      expect(s.connections()).toBe(1);
      expect(s.requests[0]).toMatch(/^GET \/obj HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\nrange: bytes=0-299999$/);
    } finally {
      pool.destroy();
    }
  });

  it('reads a chunked error body as text and a close-delimited body to its end', async () => {
    const s = await serve((socket, _request, i) => {
      if (i === 0)
        socket.write(
          'HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<Error\r\n3\r\n/>\n\r\n0\r\n\r\n',
        );
      else socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it');
    });
    const pool = getPool(s.origin, OPTIONS);
    try {
      const first = await pool.get('/a', {}, signal());
      expect(first.statusCode).toBe(503);
      expect(await first.readText(1000)).toBe('<Error/>\n');
      const second = await pool.get('/b', {}, signal());
      const parts = [Buffer.alloc(9)];
      expect(await second.readInto(parts)).toBe(9);
      expect(parts[0]!.toString()).toBe('all of it');
      expect(s.connections()).toBe(1); // the chunked response kept the connection
    } finally {
      pool.destroy();
    }
  });

  it('a body longer than its buffers, or cut short, fails; bytes past Content-Length never reach the buffers', async () => {
    const s = await serve((socket, _request, i) => {
      if (i === 0) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n0\r\n\r\n');
      else if (i === 1) socket.end('HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n12345');
      else socket.write('HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n\r\nabcdEXTRA');
    });
    const pool = getPool(s.origin, OPTIONS);
    try {
      await expect((await pool.get('/long', {}, signal())).readInto([Buffer.alloc(4)])).rejects.toBeInstanceOf(
        BodyOverflowError,
      );
      const short = await pool.get('/short', {}, signal());
      await expect(short.readInto([Buffer.alloc(10)])).rejects.toMatchObject({ code: 'ECONNRESET' });
      expect(short.bytesRead).toBe(5);
      const target = Buffer.alloc(8, 0x2e);
      const res = await pool.get('/extra', {}, signal());
      expect(await res.readInto([target.subarray(0, 4)])).toBe(4);
      expect(target.toString()).toBe('abcd....');
    } finally {
      pool.destroy();
    }
  });

  it('a silent body times out, a closed idle connection is replaced, and destroy ends a stalled request', async () => {
    const s = await serve((socket, _request, i) => {
      if (i === 0)
        socket.write('HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n123'); // then silence
      else if (i === 1) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        setTimeout(() => socket.destroy(), 20); // the server closes the idle connection
      } else if (i === 2) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      // i === 3: no answer at all
    });
    const pool = getPool(s.origin, OPTIONS);
    try {
      const silent = await pool.get('/silent', {}, signal());
      await expect(silent.readInto([Buffer.alloc(10)])).rejects.toMatchObject({ code: 'BODY_TIMEOUT' });
      expect(await (await pool.get('/ok', {}, signal())).readText(10)).toBe('ok');
      await new Promise((r) => setTimeout(r, 100));
      expect(await (await pool.get('/ok', {}, signal())).readText(10)).toBe('ok');
      expect(s.connections()).toBe(3);
      const stalled = pool.get('/never', {}, signal());
      await new Promise((r) => setTimeout(r, 50));
      const started = Date.now();
      pool.destroy();
      await expect(stalled).rejects.toMatchObject({ code: 'ECONNABORTED' });
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      pool.destroy();
    }
  });

  it('requests beyond the connection limit wait for a free connection, and an abort leaves the queue', async () => {
    const s = await serve((socket, request) => {
      const delay = request.includes('/slow') ? 100 : 0;
      setTimeout(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx'), delay);
    });
    const pool = getPool(s.origin, { ...OPTIONS, connections: 1 });
    try {
      const abort = new AbortController();
      const slow = pool.get('/slow', {}, signal()).then((r) => r.readText(1));
      const aborted = pool.get('/aborted', {}, abort.signal);
      const queued = pool.get('/queued', {}, signal()).then((r) => r.readText(1));
      abort.abort();
      await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
      expect(await Promise.all([slow, queued])).toEqual(['x', 'x']);
      expect(s.connections()).toBe(1);
      expect(s.requests.map((r) => r.split(' ')[1])).toEqual(['/slow', '/queued']);
    } finally {
      pool.destroy();
    }
  });

  it('never sends a header that could split the request', async () => {
    const s = await serve(() => undefined);
    const pool = getPool(s.origin, OPTIONS);
    try {
      await expect(pool.get('/x', { 'if-match': '"a"\r\nx-evil: 1' }, signal())).rejects.toThrow(/cannot be sent/);
      await expect(pool.get('/x y', {}, signal())).rejects.toThrow(/cannot carry/);
      expect(s.requests).toEqual([]);
    } finally {
      pool.destroy();
    }
  });
});

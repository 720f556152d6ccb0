import { connect, type Socket } from 'node:net';
import {
  type BodyFraming,
  bodyFraming,
  ChunkedDecoder,
  keepsAlive,
  ProtocolError,
  parseResponseHead,
  type ResponseHead,
} from './http1-head.js';

/**
 * One keep-alive HTTP/1.1 connection over plain TCP whose response bodies are read by the kernel
 * straight into the caller's buffers (net's `onread`: the socket reads into a buffer we name before
 * each read). node:http instead copies every body piece into a fresh Buffer in its parser and the
 * caller copies it again: measured at 3-3.6 CPU-s per GiB received against 1.4-1.6 here, the largest
 * cost of a mount's sequential reads. Only bodies of known length go straight in; a head, a chunked
 * or close-delimited body and anything unexpected pass through a small scratch buffer.
 */

/** Where a socket's next read lands and who is told of it. Bound when the socket is made, so a socket
 * opened early (preconnect.ts) can be claimed by a connection later. */
export interface ReadPort {
  /** Handed to the socket for its next read (the socket asks right after each read's callback). */
  target: Uint8Array;
  readonly scratch: Buffer;
  /** `n` bytes were read into `buffer` (a target handed out earlier, not necessarily the current one). */
  onRead(n: number, buffer: Uint8Array): boolean;
}

const SCRATCH_BYTES = 64 * 1024;

/** A TCP connection that reads through a ReadPort; until a connection claims it, any byte received closes it. */
export function connectPlain(host: string, port: number): { socket: Socket; port: ReadPort } {
  const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  const readPort: ReadPort = {
    target: scratch,
    scratch,
    onRead: () => {
      socket.destroy();
      return false;
    },
  };
  const socket = connect({
    host,
    port,
    noDelay: true,
    keepAlive: true,
    onread: { buffer: () => readPort.target, callback: (n: number, buffer: Uint8Array) => readPort.onRead(n, buffer) },
  });
  return { socket, port: readPort };
}

/** Where a body goes. `window` lets the socket read straight into the sink; `write` copies what came elsewhere. */
export interface BodySink {
  /** The sink's next free bytes (a view), or undefined when it takes copies only. */
  window(): Uint8Array | undefined;
  /** `n` bytes were read into the last window. */
  advance(n: number): void;
  /** Body bytes that arrived in scratch memory (copy them; throw if they do not fit). */
  write(bytes: Uint8Array): void;
  /** True once the sink wants no more (the rest of the body is dropped with the connection). */
  satisfied?(): boolean;
}

type Phase = 'idle' | 'head' | 'held' | 'body' | 'closed';

function connectionError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}

export class Http1Connection {
  /** Body bytes of the current response delivered to its sink. */
  bodyBytes = 0;
  /** Called on every read while a body arrives (an idle timer's refresh). */
  onProgress?: () => void;
  onIdle?: (c: Http1Connection) => void;
  onClosed?: (c: Http1Connection) => void;

  private phase: Phase = 'idle';
  private head?: Buffer;
  /** Body bytes that came with the head, held until a sink attaches. */
  private pending?: Buffer;
  private framing: BodyFraming = { kind: 'none' };
  private remaining = 0;
  private chunked?: ChunkedDecoder;
  private sink?: BodySink;
  private reusable = false;
  private closedWith?: Error;
  private waitingHead?: { resolve(head: ResponseHead): void; reject(e: Error): void };
  private waitingBody?: { resolve(): void; reject(e: Error): void };

  constructor(
    readonly socket: Socket,
    private readonly port: ReadPort,
  ) {
    port.onRead = (n, buffer) => this.onRead(n, buffer);
    socket.on('error', (e) => this.close(e));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.close(connectionError('connection closed')));
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  /** Sends a request (a full head, CRLFs included) and resolves with the response head. */
  request(requestHead: string): Promise<ResponseHead> {
    if (this.phase !== 'idle') return Promise.reject(this.closedWith ?? new Error('connection is busy'));
    this.phase = 'head';
    this.bodyBytes = 0;
    return new Promise((resolve, reject) => {
      this.waitingHead = { resolve, reject };
      this.socket.write(requestHead);
    });
  }

  /** Reads the body of the response whose head was delivered into `sink`; resolves at its end. */
  readBody(sink: BodySink): Promise<void> {
    if (this.phase !== 'held') return Promise.reject(this.closedWith ?? new Error('no response body to read'));
    return new Promise((resolve, reject) => {
      this.waitingBody = { resolve, reject };
      this.sink = sink;
      this.phase = 'body';
      try {
        const pending = this.pending;
        this.pending = undefined;
        if (pending) this.feed(pending);
        if (this.next()) this.socket.resume();
      } catch (e) {
        this.close(e as Error);
      }
    });
  }

  /** Closes the connection; a request or body waiting on it fails with `error`. */
  close(error?: Error): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closedWith = error ?? connectionError('connection closed');
    this.socket.destroy();
    const head = this.waitingHead;
    const body = this.waitingBody;
    this.waitingHead = this.waitingBody = undefined;
    this.sink = undefined;
    this.pending = undefined;
    head?.reject(this.closedWith);
    body?.reject(this.closedWith);
    this.onClosed?.(this);
  }

  private onRead(n: number, buffer: Uint8Array): boolean {
    try {
      const bytes = buffer.subarray(0, n);
      if (this.phase === 'head') return this.takeHead(bytes);
      if (this.phase !== 'body') throw new ProtocolError('bytes from the server with no request waiting for them');
      this.onProgress?.();
      // Anything but scratch is the window handed out after the previous read: the bytes are in place.
      if (buffer !== this.port.scratch) {
        this.remaining -= n;
        this.bodyBytes += n;
        this.sink!.advance(n);
      } else {
        this.feed(bytes);
      }
      return this.next();
    } catch (e) {
      this.close(e as Error);
      return false;
    }
  }

  private takeHead(bytes: Uint8Array): boolean {
    // A copy: the scratch buffer is read into again.
    this.head = this.head ? Buffer.concat([this.head, bytes]) : Buffer.from(bytes);
    let head = parseResponseHead(this.head);
    // 1xx heads are interim (100 Continue); the real head follows.
    while (head && head.status < 200) {
      if (head.status === 101) throw new ProtocolError('101 Switching Protocols to a GET');
      this.head = this.head.subarray(head.length);
      head = parseResponseHead(this.head);
    }
    if (!head) return true;
    const rest = this.head.subarray(head.length);
    this.head = undefined;
    this.framing = bodyFraming(head);
    this.reusable = keepsAlive(head, this.framing);
    this.remaining = this.framing.kind === 'length' ? this.framing.bytes : 0;
    this.chunked = this.framing.kind === 'chunked' ? new ChunkedDecoder() : undefined;
    if (this.framing.kind === 'none' && rest.length > 0) this.reusable = false;
    this.pending = rest.length > 0 ? rest : undefined;
    this.phase = 'held';
    const waiting = this.waitingHead!;
    this.waitingHead = undefined;
    waiting.resolve(head);
    // Pause until the body's reader attaches (readBody), so its bytes can go straight to it.
    return false;
  }

  /** Body bytes that did not land in a window: through the framing into the sink. */
  private feed(bytes: Uint8Array): void {
    const deliver = (data: Uint8Array): void => {
      this.bodyBytes += data.length;
      this.sink!.write(data);
    };
    switch (this.framing.kind) {
      case 'length': {
        const n = Math.min(bytes.length, this.remaining);
        deliver(bytes.subarray(0, n));
        this.remaining -= n;
        // More than Content-Length said: the connection's next bytes cannot be trusted.
        if (bytes.length > n) this.reusable = false;
        break;
      }
      case 'chunked':
        if (this.chunked!.feed(bytes, deliver) < bytes.length) this.reusable = false;
        break;
      case 'close':
        deliver(bytes);
        break;
      case 'none':
        if (bytes.length > 0) this.reusable = false;
        break;
    }
  }

  /** After body bytes: finish the body, or choose where the next read lands. Returns "keep reading". */
  private next(): boolean {
    if (this.phase !== 'body') return false;
    const f = this.framing;
    const ended =
      f.kind === 'none' ||
      (f.kind === 'length' && this.remaining === 0) ||
      (f.kind === 'chunked' && this.chunked!.done);
    if (ended || this.sink!.satisfied?.()) {
      if (!ended) this.reusable = false;
      this.finishBody();
      return (this.phase as Phase) === 'idle'; // an idle connection keeps reading, to notice the server closing it
    }
    const window = f.kind === 'length' ? this.sink!.window() : undefined;
    if (window && window.length > 0) {
      // Never more than the body holds: the next response's bytes must not land in the caller's buffer.
      this.port.target = window.length > this.remaining ? window.subarray(0, this.remaining) : window;
    } else {
      this.port.target = this.port.scratch;
    }
    return true;
  }

  private finishBody(): void {
    const waiting = this.waitingBody;
    this.waitingBody = undefined;
    this.sink = undefined;
    this.port.target = this.port.scratch;
    if (this.reusable) {
      this.phase = 'idle';
    } else {
      this.close();
    }
    waiting?.resolve();
    if (this.phase === 'idle') this.onIdle?.(this);
  }

  private onEnd(): void {
    if (this.phase === 'body' && this.framing.kind === 'close') {
      this.reusable = false;
      this.finishBody();
    } else if (this.phase === 'head') {
      this.close(connectionError('socket hang up'));
    } else if (this.phase === 'body') {
      this.close(connectionError(`connection closed after ${this.bodyBytes} bytes of the body`));
    } else {
      this.close();
    }
  }
}

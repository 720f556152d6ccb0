/**
 * The HTTP/1.1 response wire format our own GET client (http1-connection.ts) needs: the response head,
 * how its body is framed (RFC 9112 section 6.3), whether the connection may be reused, and a
 * chunked-body decoder. Strict: anything malformed is a ProtocolError, never a guess.
 */

/** A response head larger than this is refused (node's own limit is 16 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (with any extensions) or a trailer line longer than this is refused. */
const MAX_CHUNK_LINE_BYTES = 4 * 1024;

export interface ResponseHead {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minorVersion: number;
  status: number;
  /** Lowercased names; a repeated header's values joined with ", " (as node:http does). */
  headers: Record<string, string>;
  /** Bytes of the head, the blank line included. */
  length: number;
}

export type BodyFraming =
  | { kind: 'none' }
  | { kind: 'length'; bytes: number }
  | { kind: 'chunked' }
  /** Delimited by the server closing the connection. */
  | { kind: 'close' };

/** A response the client cannot read safely. Its code is one errors.ts counts as a (retryable) network fault. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code = 'HPE_INVALID_CONSTANT';
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parses the head at the start of `bytes`; undefined while its blank line has not arrived. */
export function parseResponseHead(bytes: Uint8Array): ResponseHead | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) {
    if (buf.length > MAX_HEAD_BYTES) throw new ProtocolError(`response head longer than ${MAX_HEAD_BYTES} bytes`);
    return undefined;
  }
  if (end > MAX_HEAD_BYTES) throw new ProtocolError(`response head longer than ${MAX_HEAD_BYTES} bytes`);
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const status = STATUS_LINE.exec(lines[0]!);
  if (!status) throw new ProtocolError(`bad status line ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    // No obsolete line folding, no whitespace before the colon (RFC 9112 5.1: a response smuggling vector).
    if (!TOKEN.test(name)) throw new ProtocolError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const value = line.slice(colon + 1).trim();
    if (/[\0\r\n]/.test(value)) throw new ProtocolError(`bad value of header ${name}`);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { minorVersion: Number(status[1]), status: Number(status[2]), headers, length: end + 4 };
}

/** How the body of a response to a GET is delimited. */
export function bodyFraming(head: ResponseHead): BodyFraming {
  if (head.status < 200 || head.status === 204 || head.status === 304) return { kind: 'none' };
  const te = head.headers['transfer-encoding'];
  if (te !== undefined) {
    const codings = te
      .toLowerCase()
      .split(',')
      .map((c) => c.trim());
    // Chunked must be the last coding; otherwise only the close delimits the body.
    return codings[codings.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  const cl = head.headers['content-length'];
  if (cl === undefined) return { kind: 'close' };
  // A repeated Content-Length is acceptable only when every copy agrees.
  const values = new Set(cl.split(',').map((v) => v.trim()));
  const [only] = values;
  if (values.size !== 1 || !/^\d{1,15}$/.test(only!))
    throw new ProtocolError(`bad Content-Length ${JSON.stringify(cl)}`);
  const bytes = Number(only);
  return bytes === 0 ? { kind: 'none' } : { kind: 'length', bytes };
}

/** May the connection carry another request once this response's body is read? */
export function keepsAlive(head: ResponseHead, framing: BodyFraming): boolean {
  if (framing.kind === 'close') return false;
  const tokens = (head.headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
  if (tokens.includes('close')) return false;
  return head.minorVersion === 1 || tokens.includes('keep-alive');
}

/**
 * Decodes a chunked body fed in pieces: `feed` hands the data to `deliver` and returns how many input
 * bytes it used (less than given only once the body has ended; what follows is not this body's).
 */
export class ChunkedDecoder {
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  private line = '';
  private left = 0;

  get done(): boolean {
    return this.state === 'done';
  }

  feed(bytes: Uint8Array, deliver: (data: Uint8Array) => void): number {
    let i = 0;
    while (i < bytes.length && this.state !== 'done') {
      if (this.state === 'data') {
        const n = Math.min(this.left, bytes.length - i);
        deliver(bytes.subarray(i, i + n));
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = 'data-end';
        continue;
      }
      // The other states read a line, CRLF-terminated.
      const lf = bytes.indexOf(0x0a, i);
      const upto = lf < 0 ? bytes.length : lf + 1;
      this.line += Buffer.from(bytes.buffer, bytes.byteOffset + i, upto - i).toString('latin1');
      i = upto;
      if (this.line.length > MAX_CHUNK_LINE_BYTES) throw new ProtocolError('chunked body line too long');
      if (lf < 0) break;
      if (!this.line.endsWith('\r\n')) throw new ProtocolError('chunked body line without CRLF');
      const line = this.line.slice(0, -2);
      this.line = '';
      if (this.state === 'data-end') {
        if (line !== '') throw new ProtocolError('chunk data longer than its size');
        this.state = 'size';
      } else if (this.state === 'size') {
        const size = /^([0-9a-fA-F]{1,12})(?:[ \t]*;.*)?$/.exec(line);
        if (!size) throw new ProtocolError(`bad chunk size ${JSON.stringify(line.slice(0, 40))}`);
        this.left = Number.parseInt(size[1]!, 16);
        this.state = this.left === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.state = 'done'; // the blank line after the trailers
      }
    }
    return i;
  }
}

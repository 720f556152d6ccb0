import { redact } from '../util/log.js';

/**
 * Why a remote read failed. `code` is S3's error code when the server sent one (NoSuchKey, AccessDenied,
 * SlowDown...), otherwise one of the transport's own codes below.
 */
export type TransportErrorCode =
  /** The ETag, size or Last-Modified differs from the first response, or the server answered 412. */
  | 'ObjectChanged'
  /** Status, Content-Range or length of a response does not match the request (a server fault). */
  | 'BadResponse'
  /** The server answered 200 with the whole object to a range that is not the whole object. */
  | 'RangeIgnored'
  /** Fewer body bytes arrived than announced. */
  | 'Truncated'
  /** Connect, headers or idle-body timeout of one attempt. */
  | 'Timeout'
  /** Reset, refused or otherwise broken connection. */
  | 'Network'
  /** The retry budget (attempts or total time) ran out; `cause` is the last attempt's error. */
  | 'RetriesExhausted'
  /** The caller aborted the read. */
  | 'Aborted'
  | 'HttpError';

export interface SourceErrorDetails {
  /** Object name for messages (already credential-free). */
  object: string;
  code: TransportErrorCode | string;
  status?: number;
  /** Byte range `[start, end]` inclusive that was asked, if any. */
  range?: readonly [number, number];
  retryable?: boolean;
  attempts?: number;
  cause?: unknown;
}

/** A failed remote request. The message is redacted and names the object, the range and S3's code. */
export class SourceError extends Error {
  readonly object: string;
  readonly code: string;
  readonly status?: number;
  readonly range?: readonly [number, number];
  readonly retryable: boolean;
  readonly attempts?: number;

  constructor(message: string, details: SourceErrorDetails) {
    const where = details.range ? ` [${details.range[0]}-${details.range[1]}]` : '';
    const status = details.status ? `${details.status} ` : '';
    super(redact(`${details.object}${where}: ${status}${details.code}: ${message}`), { cause: details.cause });
    this.name = 'SourceError';
    this.object = details.object;
    this.code = details.code;
    this.status = details.status;
    this.range = details.range;
    this.retryable = details.retryable ?? false;
    this.attempts = details.attempts;
  }
}

export function isSourceError(e: unknown): e is SourceError {
  return e instanceof SourceError;
}

/** `<Code>` and `<Message>` of an S3 XML error body (R2 uses the same shape); undefined when absent. */
export function parseS3ErrorBody(body: string): { code?: string; message?: string } {
  const pick = (tag: string): string | undefined => {
    const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(body);
    return m ? unescapeXml(m[1]!.trim()).slice(0, 500) : undefined;
  };
  return { code: pick('Code'), message: pick('Message') };
}

function unescapeXml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Statuses worth another attempt: server faults and throttling. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'HPE_INVALID_CONSTANT',
]);
/** http-get.ts's own timeouts. */
const TIMEOUT_CODES = new Set(['CONNECT_TIMEOUT', 'HEADERS_TIMEOUT', 'BODY_TIMEOUT']);

/** Classifies a thrown transport error (node:http, node:net) as timeout, network or other. */
export function classifyTransportError(e: unknown): 'Timeout' | 'Network' | 'Aborted' | undefined {
  let cur: unknown = e;
  for (let i = 0; cur && i < 4; i++) {
    const err = cur as { code?: string; name?: string; cause?: unknown };
    if (err.name === 'AbortError' || err.code === 'UND_ERR_ABORTED' || err.code === 'ABORT_ERR') return 'Aborted';
    if (err.name === 'TimeoutError') return 'Timeout';
    if (err.code && TIMEOUT_CODES.has(err.code)) return 'Timeout';
    if (err.code && NETWORK_CODES.has(err.code)) return 'Network';
    cur = err.cause;
  }
  return undefined;
}

/**
 * What a ranged GET's response looks like to RangedObject, whichever client fetched it: our own
 * HTTP/1.1 client for plain http (http1-connection.ts), node:https for TLS (http-get.ts).
 */
export interface GetResponse {
  readonly statusCode: number;
  /** Lowercased names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Body bytes read so far (for messages about a body cut short). */
  readonly bytesRead: number;
  /**
   * Reads the body into `parts`, one after another. Resolves with the bytes filled when the body ends
   * (fewer than the parts hold: the body was short); rejects with BodyOverflowError when it holds more,
   * with a `BODY_TIMEOUT` HttpTimeoutError after the pool's idle time of silence, or with the
   * connection's error.
   */
  readInto(parts: readonly Uint8Array[]): Promise<number>;
  /** The body as text, at most `limit` bytes of it (the rest is dropped with the connection). */
  readText(limit: number): Promise<string>;
  /** Drops the body unread, and its connection with it: never download what will not be used. */
  discard(): void;
}

/** The body held more bytes than the buffers it was read into. */
export class BodyOverflowError extends Error {
  override readonly name = 'BodyOverflowError';
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

/** Copies `bytes` into `parts` from position (part, at); returns the new position and what did not fit. */
export function copyIntoParts(
  parts: readonly Uint8Array[],
  position: { part: number; at: number },
  bytes: Uint8Array,
): number {
  let from = 0;
  while (from < bytes.length && position.part < parts.length) {
    const target = parts[position.part]!;
    const n = Math.min(target.length - position.at, bytes.length - from);
    target.set(n === bytes.length && from === 0 ? bytes : bytes.subarray(from, from + n), position.at);
    from += n;
    position.at += n;
    if (position.at === target.length) {
      position.part++;
      position.at = 0;
    }
  }
  return bytes.length - from;
}

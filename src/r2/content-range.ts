/**
 * The two byte-range shapes this transport asks for, and the `Content-Range` answers it accepts
 * (RFC 9110 §14.4: `bytes first-last/complete` or, on 416, `bytes *\/complete`).
 */
export type ByteRange =
  /** Inclusive `[start, end]`. */
  | { kind: 'span'; start: number; end: number }
  /** The last `length` bytes. */
  | { kind: 'suffix'; length: number };

export function rangeHeader(r: ByteRange): string {
  return r.kind === 'span' ? `bytes=${r.start}-${r.end}` : `bytes=-${r.length}`;
}

export type ContentRange =
  | { satisfied: true; start: number; end: number; size: number }
  | { satisfied: false; size: number };

const SATISFIED = /^bytes (\d+)-(\d+)\/(\d+)$/i;
const UNSATISFIED = /^bytes \*\/(\d+)$/i;

/** Parses a Content-Range header; undefined when absent or malformed (including a `*` size). */
export function parseContentRange(header: string | undefined): ContentRange | undefined {
  if (!header) return undefined;
  const value = header.trim();
  const m = SATISFIED.exec(value);
  if (m) {
    const start = Number(m[1]);
    const end = Number(m[2]);
    const size = Number(m[3]);
    if (![start, end, size].every(Number.isSafeInteger) || end < start || end >= size) return undefined;
    return { satisfied: true, start, end, size };
  }
  const u = UNSATISFIED.exec(value);
  if (u) {
    const size = Number(u[1]);
    return Number.isSafeInteger(size) ? { satisfied: false, size } : undefined;
  }
  return undefined;
}

/** The inclusive span a correct server returns for `r` on an object of `size` bytes (undefined: none). */
export function expectedSpan(r: ByteRange, size: number): { start: number; end: number } | undefined {
  if (r.kind === 'suffix') {
    if (size === 0 || r.length === 0) return undefined;
    return { start: Math.max(0, size - r.length), end: size - 1 };
  }
  if (r.start >= size) return undefined;
  return { start: r.start, end: Math.min(r.end, size - 1) };
}

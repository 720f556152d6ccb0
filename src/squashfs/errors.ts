/**
 * Every failure the reader reports is a SquashfsError with a code:
 * - POSIX-like codes for lookups (ENOENT, ENOTDIR, EISDIR, EINVAL, ENODATA, ENAMETOOLONG, ELOOP);
 * - ECORRUPT for an image that breaks the format (with the structure and offset that did);
 * - EUNSUPPORTED for valid images we cannot read (unknown compressor, newer version);
 * - EIO when the byte source failed (the cause is kept; the image may be fine).
 * The FUSE layer maps ECORRUPT and EIO to EIO; it never sees any other exception type.
 */
export type SquashfsErrorCode =
  | 'ENOENT'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'EINVAL'
  | 'ENODATA'
  | 'ENAMETOOLONG'
  | 'ELOOP'
  | 'ECORRUPT'
  | 'EUNSUPPORTED'
  | 'EIO';

export interface SquashfsErrorDetails {
  /** Which on-disk structure was being decoded ("superblock", "inode", "directory header", ...). */
  structure?: string;
  /** Absolute byte offset in the image, where known. */
  offset?: number;
  /** The path being looked up, where relevant. */
  path?: string;
  cause?: unknown;
}

export class SquashfsError extends Error {
  readonly code: SquashfsErrorCode;
  readonly structure?: string;
  readonly offset?: number;
  readonly path?: string;

  constructor(code: SquashfsErrorCode, message: string, details: SquashfsErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'SquashfsError';
    this.code = code;
    this.structure = details.structure;
    this.offset = details.offset;
    this.path = details.path;
  }
}

/** Shorthand for the most common failure: the image contradicts the format. */
export function corrupt(structure: string, reason: string, offset?: number): SquashfsError {
  const where = offset === undefined ? '' : ` at offset ${offset}`;
  return new SquashfsError('ECORRUPT', `corrupt image: ${structure}${where}: ${reason}`, { structure, offset });
}

export function isSquashfsError(e: unknown): e is SquashfsError {
  return e instanceof SquashfsError;
}

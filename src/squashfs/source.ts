/**
 * What the SquashFS reader needs from storage: random access to one immutable object.
 *
 * The reader declares this minimal interface itself (like cogeotiff's core) so it depends on no
 * transport. Sources in `src/r2` (local file, HTTP, S3/R2, and the chunk cache wrapping them)
 * satisfy it structurally.
 */
/** How a read may be served. */
export interface ReadOptions {
  /**
   * Only these bytes are wanted (a slice of a large stored block read at random): a cache fetches
   * what covers them and not the neighbours it would bring for a small read (small files read next).
   */
  exact?: boolean;
}

export interface ByteSource {
  /** Total size of the object in bytes. */
  readonly size: number;
  /** A name for messages and logs; never contains credentials or signatures. */
  readonly name: string;
  /**
   * Returns exactly `length` bytes starting at `offset`, or throws.
   * Never returns a short read: a truncated object is an error.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Optional hint: keep `[offset, offset + length)` resident (the metadata span) and fetch whatever
   * of it is missing now, in as few requests as possible. Reads of that span never go remote again.
   */
  retain?(offset: number, length: number): Promise<void>;
  /**
   * Optional: fills `target` with exactly `target.length` bytes from `offset`, or throws. A source
   * that has it is a cache in itself (a local file's page cache, the chunk cache), so uncompressed
   * data blocks are copied from it straight into the caller's buffer instead of through the
   * reader's block cache.
   */
  readInto?(offset: number, target: Uint8Array, options?: ReadOptions): Promise<void>;
  /**
   * Optional hint: `[offset, offset + length)` is about to be read (a listed directory's files, see
   * subtree-prefetch.ts); a cache fetches what it lacks of it in the background, below every read,
   * and resolves with whether all of it arrived.
   */
  prefetch?(offset: number, length: number): Promise<boolean>;
  /** Releases connections, file handles and timers. */
  close?(): Promise<void>;
}

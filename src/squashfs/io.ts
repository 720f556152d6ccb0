import { rangeInside } from '../util/range.js';
import type { ByteSource, ReadOptions } from './source.js';
import { SquashfsError, corrupt } from './errors.js';

/**
 * The byte source as the reader uses it: every read is checked to lie inside
 * `[0, limit)` (bytes_used once known) and source failures become EIO SquashfsErrors.
 */
export class ImageIO {
  limit: number;
  /**
   * Set when the source fills a caller's buffer itself (ByteSource.readInto: a local file or the
   * chunk cache, each already a cache): uncompressed data blocks then skip the block cache.
   */
  readonly direct: boolean;

  constructor(readonly source: ByteSource) {
    this.limit = source.size;
    this.direct = typeof source.readInto === 'function';
  }

  async read(offset: number, length: number, structure: string): Promise<Uint8Array> {
    this.check(offset, length, structure);
    let bytes: Uint8Array;
    try {
      bytes = await this.source.read(offset, length);
    } catch (e) {
      throw this.failure(e, offset, length, structure);
    }
    if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
      throw new SquashfsError('EIO', `${this.source.name}: short read at ${offset} (${bytes?.length} of ${length} bytes)`, { structure, offset });
    }
    return bytes;
  }

  /** Fills `target` from `offset`; only when `direct` is set. */
  async readInto(offset: number, target: Uint8Array, structure: string, options?: ReadOptions): Promise<void> {
    this.check(offset, target.length, structure);
    try {
      await this.source.readInto!(offset, target, options);
    } catch (e) {
      throw this.failure(e, offset, target.length, structure);
    }
  }

  private check(offset: number, length: number, structure: string): void {
    if (!rangeInside(offset, length, this.limit)) {
      throw corrupt(structure, `read of ${length} bytes beyond the end of the image (${this.limit})`, offset);
    }
  }

  private failure(e: unknown, offset: number, length: number, structure: string): SquashfsError {
    if (e instanceof SquashfsError) return e;
    return new SquashfsError('EIO', `${this.source.name}: read of ${length} bytes at ${offset} failed: ${(e as Error)?.message ?? String(e)}`, {
      structure,
      offset,
      cause: e,
    });
  }
}

import type { ByteSource } from './source.js';
import { SquashfsError, corrupt } from './errors.js';

/**
 * The byte source as the reader uses it: every read is checked to lie inside
 * `[0, limit)` (bytes_used once known) and source failures become EIO SquashfsErrors.
 */
export class ImageIO {
  limit: number;

  constructor(readonly source: ByteSource) {
    this.limit = source.size;
  }

  async read(offset: number, length: number, structure: string): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.limit) {
      throw corrupt(structure, `read of ${length} bytes beyond the end of the image (${this.limit})`, offset);
    }
    let bytes: Uint8Array;
    try {
      bytes = await this.source.read(offset, length);
    } catch (e) {
      if (e instanceof SquashfsError) throw e;
      throw new SquashfsError('EIO', `${this.source.name}: read of ${length} bytes at ${offset} failed: ${(e as Error)?.message ?? String(e)}`, {
        structure,
        offset,
        cause: e,
      });
    }
    if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
      throw new SquashfsError('EIO', `${this.source.name}: short read at ${offset} (${bytes?.length} of ${length} bytes)`, { structure, offset });
    }
    return bytes;
  }
}

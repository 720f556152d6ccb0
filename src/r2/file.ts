import { open, type FileHandle } from 'node:fs/promises';

/**
 * A local file (or block device) as a ByteSource: positional reads with pread, no cache of its own
 * (the OS page cache is the cache). An optional base offset serves images embedded in a larger file.
 */
export class FileSource {
  readonly name: string;
  readonly size: number;
  private readonly handle: FileHandle;
  private readonly base: number;
  private closed = false;

  private constructor(path: string, handle: FileHandle, size: number, base: number) {
    this.name = path;
    this.handle = handle;
    this.size = size;
    this.base = base;
  }

  static async open(path: string, options: { offset?: number } = {}): Promise<FileSource> {
    const base = options.offset ?? 0;
    if (!Number.isSafeInteger(base) || base < 0) throw new Error(`invalid image offset ${base}`);
    const handle = await open(path, 'r');
    try {
      const st = await handle.stat();
      if (st.isDirectory()) throw Object.assign(new Error(`${path} is a directory, not an image`), { code: 'EISDIR' });
      if (base > st.size) throw new Error(`image offset ${base} is beyond the end of ${path} (${st.size} bytes)`);
      return new FileSource(path, handle, st.size - base, base);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(offset, buf);
    return buf;
  }

  /** Fills `target` with the bytes from `offset` (the reader reads uncompressed blocks straight into FUSE's buffer). */
  async readInto(offset: number, target: Uint8Array): Promise<void> {
    const length = target.length;
    if (this.closed) throw new Error(`${this.name}: source is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.size) {
      throw new RangeError(`${this.name}: read [${offset}, +${length}) outside the object (${this.size} bytes)`);
    }
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(target, done, length - done, this.base + offset + done);
      if (bytesRead === 0) throw new Error(`${this.name}: file shrank: short read at ${offset + done}`);
      done += bytesRead;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

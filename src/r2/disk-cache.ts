import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { logger } from '../util/log.js';

/**
 * The persistent chunk cache (`--cache-dir`): chunks of remote objects kept on local disk so a remount
 * or a second restore of the same backup fetches nothing twice.
 *
 * One directory per object version, named by a hash of (name, ETag, size); the name carries bucket
 * and key (`s3://bucket/key`). An object without an ETag is not cached on disk: nothing would tell a
 * replaced object from the one cached.
 *
 *   <dir>/objects/<key>/data    sparse; chunk c at offset c * chunkBytes
 *   <dir>/objects/<key>/index   HEADER_BYTES of header (magic line + JSON), then one
 *                               RECORD_BYTES record per chunk: u32le crc32 of the chunk, u32le PRESENT
 *
 * Crash and full-disk safety: a chunk is written first and marked second, and the record carries the
 * chunk's checksum, verified on every read. A record that is torn, missing, or does not match the
 * bytes (a crash between the two writes, a lost page, a full disk, another writer) is a miss, never
 * wrong bytes; the chunk is then fetched again. No fsync is needed for that guarantee.
 *
 * Size limit: objects are evicted whole, least recently used first (the index file's mtime is touched
 * at every open). When the current object alone exceeds the limit, it stops growing.
 */

const MAGIC = 'squashfs-r2 chunk cache v1\n';
const HEADER_BYTES = 4096;
const RECORD_BYTES = 8;
const PRESENT = 0x4b4e4843; // "CHNK"
const LIMIT_CHECK_EVERY_BYTES = 64 * 1024 * 1024;
/** Chunk bytes queued for writing; beyond this, new chunks are not cached (memory stays bounded). */
const MAX_PENDING_WRITE_BYTES = 64 * 1024 * 1024;

export interface DiskCacheOptions {
  /** Cache directory (created if missing). */
  dir: string;
  /** Bytes on disk across all objects. Default 10 GiB. */
  maxBytes?: number;
}

export interface DiskCacheStats {
  dir: string;
  /** Chunks present for this object, and their bytes. */
  presentChunks: number;
  presentBytes: number;
  hits: number;
  /** Records whose checksum did not match the bytes (served as misses). */
  badChunks: number;
  writes: number;
  writeErrors: number;
  /** Chunks not cached because the disk was behind (more than MAX_PENDING_WRITE_BYTES queued). */
  skippedWrites: number;
  pendingWriteBytes: number;
  writable: boolean;
  evictedObjects: number;
}

interface ObjectIdentity {
  name: string;
  etag?: string;
  size: number;
}

interface Header {
  name: string;
  etag: string;
  size: number;
  chunkBytes: number;
}

export class DiskChunkStore {
  private readonly log = logger('disk-cache');
  /** crc32 per chunk; undefined = absent. */
  private readonly checksums: Array<number | undefined>;
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly writing = new Set<number>();
  private writable = true;
  private writtenSinceCheck = 0;
  private pendingBytes = 0;
  private drainWaiters: Array<() => void> = [];
  private closed = false;
  private readonly counters = { hits: 0, badChunks: 0, writes: 0, writeErrors: 0, skippedWrites: 0, evictedObjects: 0 };

  private constructor(
    private readonly root: string,
    private readonly objectDir: string,
    private readonly data: FileHandle,
    private readonly index: FileHandle,
    private readonly header: Header,
    checksums: Array<number | undefined>,
    private readonly maxBytes: number,
  ) {
    this.checksums = checksums;
  }

  /** Opens (or creates) the store of one object version; undefined when the object has no ETag. */
  static async open(options: DiskCacheOptions, object: ObjectIdentity, chunkBytes: number): Promise<DiskChunkStore | undefined> {
    if (!object.etag) {
      logger('disk-cache').warn(`${object.name}: no ETag, not cached on disk`);
      return undefined;
    }
    const maxBytes = options.maxBytes ?? 10 * 1024 ** 3;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`disk cache maxBytes must be >= 0, got ${maxBytes}`);
    const header: Header = { name: object.name, etag: object.etag, size: object.size, chunkBytes };
    const key = createHash('sha256').update(`${object.name}\n${object.etag}\n${object.size}`).digest('hex').slice(0, 32);
    const objectDir = join(options.dir, 'objects', key);
    await mkdir(objectDir, { recursive: true });
    const chunkCount = Math.ceil(object.size / chunkBytes);
    let checksums = await DiskChunkStore.loadIndex(join(objectDir, 'index'), header, chunkCount);
    if (!checksums) {
      // New, or written with other parameters (chunk size, a hash collision): start over.
      await rm(join(objectDir, 'data'), { force: true });
      await rm(join(objectDir, 'index'), { force: true });
      checksums = new Array<number | undefined>(chunkCount).fill(undefined);
    }
    const index = await openReadWrite(join(objectDir, 'index'));
    const data = await openReadWrite(join(objectDir, 'data'));
    try {
      const headerBytes = Buffer.alloc(HEADER_BYTES);
      const text = Buffer.from(MAGIC + JSON.stringify(header) + '\n');
      if (text.length > HEADER_BYTES) throw new Error(`${object.name}: name too long for the disk cache header`);
      text.copy(headerBytes);
      await index.write(headerBytes, 0, HEADER_BYTES, 0);
      const now = new Date();
      await utimes(join(objectDir, 'index'), now, now); // most recently used
    } catch (e) {
      await index.close();
      await data.close();
      throw e;
    }
    const store = new DiskChunkStore(options.dir, objectDir, data, index, header, checksums, maxBytes);
    await store.enforceLimit();
    return store;
  }

  private static async loadIndex(path: string, header: Header, chunkCount: number): Promise<Array<number | undefined> | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      return undefined;
    }
    if (bytes.length < HEADER_BYTES) return undefined;
    const text = bytes.subarray(0, HEADER_BYTES).toString('utf8');
    if (!text.startsWith(MAGIC)) return undefined;
    try {
      const stored = JSON.parse(text.slice(MAGIC.length, text.indexOf('\n', MAGIC.length))) as Header;
      if (stored.name !== header.name || stored.etag !== header.etag || stored.size !== header.size || stored.chunkBytes !== header.chunkBytes) {
        return undefined;
      }
    } catch {
      return undefined;
    }
    const checksums = new Array<number | undefined>(chunkCount).fill(undefined);
    for (let c = 0; c < chunkCount; c++) {
      const at = HEADER_BYTES + c * RECORD_BYTES;
      if (at + RECORD_BYTES > bytes.length) break;
      if (bytes.readUInt32LE(at + 4) === PRESENT) checksums[c] = bytes.readUInt32LE(at);
    }
    return checksums;
  }

  has(chunk: number): boolean {
    return this.checksums[chunk] !== undefined && !this.writing.has(chunk);
  }

  /** The chunk's bytes if present and intact; a checksum mismatch unmarks it and returns undefined. */
  async read(chunk: number, length: number): Promise<Uint8Array | undefined> {
    const expected = this.checksums[chunk];
    if (expected === undefined || this.closed) return undefined;
    const buf = Buffer.allocUnsafe(length);
    try {
      const { bytesRead } = await this.data.read(buf, 0, length, chunk * this.header.chunkBytes);
      if (bytesRead === length && crc32(buf) === expected) {
        this.counters.hits++;
        return buf;
      }
    } catch (e) {
      this.log.warn(`${this.header.name}: reading cached chunk ${chunk} failed: ${String(e)}`);
    }
    this.counters.badChunks++;
    this.checksums[chunk] = undefined;
    this.track(this.writeRecord(chunk, undefined).then(() => undefined, () => undefined));
    return undefined;
  }

  /** Stores a chunk in the background: data first, then its record. Failures only stop caching. */
  write(chunk: number, bytes: Uint8Array): void {
    if (!this.writable || this.closed || this.checksums[chunk] !== undefined || this.writing.has(chunk)) return;
    if (this.pendingBytes + bytes.length > MAX_PENDING_WRITE_BYTES) {
      this.counters.skippedWrites++;
      return;
    }
    this.writing.add(chunk);
    this.pendingBytes += bytes.length;
    const copy = bytes; // chunk buffers are owned and never mutated after a fetch
    this.track(
      (async () => {
        try {
          await this.data.write(copy, 0, copy.length, chunk * this.header.chunkBytes);
          const sum = crc32(copy);
          await this.writeRecord(chunk, sum);
          this.checksums[chunk] = sum;
          this.counters.writes++;
          this.writtenSinceCheck += copy.length;
          if (this.writtenSinceCheck >= LIMIT_CHECK_EVERY_BYTES) {
            this.writtenSinceCheck = 0;
            await this.enforceLimit();
          }
        } catch (e) {
          this.counters.writeErrors++;
          if (this.writable) this.log.warn(`${this.header.name}: disk cache write failed, caching stops: ${String(e)}`);
          this.writable = false;
          for (const wake of this.drainWaiters.splice(0)) wake();
        } finally {
          this.writing.delete(chunk);
          this.pendingBytes -= copy.length;
          if (this.pendingBytes <= MAX_PENDING_WRITE_BYTES / 2) for (const wake of this.drainWaiters.splice(0)) wake();
        }
      })(),
    );
  }

  /** Resolves when the write queue is at most half full (hydration paces itself to the disk). */
  drained(): Promise<void> {
    if (this.pendingBytes <= MAX_PENDING_WRITE_BYTES / 2 || !this.writable) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Waits for writes in progress (close, tests). */
  async flush(): Promise<void> {
    while (this.pendingWrites.size > 0) await Promise.all([...this.pendingWrites]);
  }

  stats(): DiskCacheStats {
    let presentChunks = 0;
    let presentBytes = 0;
    for (let c = 0; c < this.checksums.length; c++) {
      if (this.checksums[c] === undefined) continue;
      presentChunks++;
      presentBytes += Math.min(this.header.chunkBytes, this.header.size - c * this.header.chunkBytes);
    }
    return { dir: this.root, presentChunks, presentBytes, ...this.counters, pendingWriteBytes: this.pendingBytes, writable: this.writable };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.data.close();
    await this.index.close();
  }

  private writeRecord(chunk: number, checksum: number | undefined): Promise<unknown> {
    const record = Buffer.alloc(RECORD_BYTES);
    if (checksum !== undefined) {
      record.writeUInt32LE(checksum, 0);
      record.writeUInt32LE(PRESENT, 4);
    }
    return this.index.write(record, 0, RECORD_BYTES, HEADER_BYTES + chunk * RECORD_BYTES);
  }

  private track(p: Promise<void>): void {
    this.pendingWrites.add(p);
    void p.finally(() => this.pendingWrites.delete(p));
  }

  /** Evicts other objects, least recently used first, until the cache fits; else stops growing. */
  private async enforceLimit(): Promise<void> {
    const objectsDir = join(this.root, 'objects');
    const entries: Array<{ dir: string; bytes: number; used: number }> = [];
    for (const name of await readdir(objectsDir).catch(() => [] as string[])) {
      const dir = join(objectsDir, name);
      try {
        const [d, i] = await Promise.all([stat(join(dir, 'data')).catch(() => undefined), stat(join(dir, 'index'))]);
        entries.push({ dir, bytes: (d ? d.blocks * 512 : 0) + i.blocks * 512, used: i.mtimeMs });
      } catch {
        // half-created or being removed by another process: not ours to count
      }
    }
    let total = entries.reduce((sum, e) => sum + e.bytes, 0);
    for (const e of entries.sort((a, b) => a.used - b.used)) {
      if (total <= this.maxBytes) break;
      if (e.dir === this.objectDir) continue;
      await rm(e.dir, { recursive: true, force: true });
      total -= e.bytes;
      this.counters.evictedObjects++;
    }
    if (total > this.maxBytes && this.writable) {
      this.log.info(`${this.header.name}: disk cache limit ${this.maxBytes} reached; not caching more of it`);
      this.writable = false;
    }
  }
}

async function openReadWrite(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    try {
      return await open(path, 'wx+');
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return open(path, 'r+');
      throw e2;
    }
  }
}

/**
 * A real byte source for the chunk cache's layer tests: a random file behind `FileObject` (real reads,
 * request log, latency and failure injection), and the layers below the one under test, wired the way
 * cache.ts wires them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ChunkFetcher, type FetcherOptions } from '../../src/r2/chunk-fetcher.js';
import { ChunkLayout } from '../../src/r2/chunk-layout.js';
import { ChunkStore } from '../../src/r2/chunk-store.js';
import type { DiskChunkStore } from '../../src/r2/disk-cache.js';
import { FileObject, type FileObjectOptions } from '../../src/r2/file-object.js';
import { PinnedMetadata } from '../../src/r2/pinned-metadata.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const CHUNK = 64 * KiB;

export interface ObjectFile {
  dir: string;
  path: string;
  data: Buffer;
  remove(): Promise<void>;
}

/** A random file of `size` bytes (not chunk-aligned by default: the last chunk is short). */
export async function objectFile(size = 8 * MiB + 1234): Promise<ObjectFile> {
  const dir = await mkdtemp(join(tmpdir(), 'cache-layer-'));
  const path = join(dir, 'object.bin');
  const data = randomBytes(size);
  await writeFile(path, data);
  return { dir, path, data, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface Layers {
  remote: FileObject;
  layout: ChunkLayout;
  store: ChunkStore;
  fetcher: ChunkFetcher;
  pinned: PinnedMetadata;
  /** Streams the fetcher considers alive (readahead tests add and remove ids). */
  alive: Set<number>;
  close(): Promise<void>;
}

export interface LayerOptions {
  cacheBytes?: number;
  fetcher?: Partial<FetcherOptions>;
  object?: FileObjectOptions;
  disk?: DiskChunkStore;
  maxPinnedBytes?: number;
}

export async function layers(file: ObjectFile, options: LayerOptions = {}): Promise<Layers> {
  const remote = await FileObject.open(file.path, options.object);
  const layout = new ChunkLayout(CHUNK, file.data.length);
  const store = new ChunkStore(layout, options.cacheBytes ?? 4 * MiB, options.disk);
  const alive = new Set<number>();
  const fetcher = new ChunkFetcher(
    remote,
    layout,
    store,
    {
      maxConcurrentFetches: 16,
      maxReadaheadFetches: 8,
      maxBackgroundFetches: 4,
      coalesceGapBytes: 2 * CHUNK,
      ...options.fetcher,
    },
    (id) => alive.has(id),
  );
  let closed = false;
  const pinned = new PinnedMetadata(
    layout,
    { name: 'test', maxPinnedBytes: options.maxPinnedBytes ?? 64 * MiB, wholeChunks: store.persistent },
    {
      has: (c) => store.has(c),
      get: (c) => store.get(c),
      fetchRange: (from, to) => fetcher.fetchRange(from, to),
      storeWholeChunks: (offset, bytes) => store.storeWholeChunks(offset, bytes, (c) => fetcher.isInFlight(c)),
      closed: () => closed,
    },
  );
  return {
    remote,
    layout,
    store,
    fetcher,
    pinned,
    alive,
    close: async () => {
      closed = true;
      fetcher.close(new Error('closed'));
      store.clear();
      await store.close();
      await remote.close();
    },
  };
}

/** The fetch requests the byte source saw, as [first chunk, chunk count]. */
export function fetchedChunks(remote: FileObject): Array<[number, number]> {
  return remote.requests.filter((r) => r.kind === 'fetch').map((r) => [r.offset / CHUNK, Math.ceil(r.length / CHUNK)]);
}

/** Byte equality without vitest's slow element-wise diff of large buffers. */
export function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  const ok = Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected);
  expect(ok, `${actual.length} bytes differ from the ${expected.length} expected`).toBe(true);
}

import { logger } from '../util/log.js';
import { Lease } from '../util/arena.js';
import type { ChunkLayout } from './chunk-layout.js';
import type { ChunkStore } from './chunk-store.js';
import { FetchScheduler, type FetchPriority, type SchedulerTask } from './fetch-scheduler.js';
import type { RemoteObject } from './types.js';

/**
 * Brings chunks of one object from the remote into the chunk store, each chunk at most once at a time:
 *
 * - In-flight sharing: a chunk being fetched has one waiter; every reader of it joins that waiter.
 * - Coalescing: the chunks asked for together become as few ranged GETs as possible; a gap of held
 *   chunks up to `coalesceGapBytes` is bridged (re-fetched) rather than paying a second request (a round
 *   trip and a connection slot cost more than a few hundred KiB of bandwidth). Chunks in flight are
 *   never bridged: their bytes are already on their way.
 * - Scheduling: GETs run under fetch-scheduler.ts in three classes (foreground, readahead, background);
 *   a reader joining a queued readahead or background GET has its part promoted to foreground.
 * - Memory: a GET starts only once the store has admitted (reserved) its bytes; readahead and background
 *   GETs that do not fit are dropped.
 * - Failure: a failed GET rejects every waiter of its chunks with its error and stores nothing.
 *
 * Retries and response checks live below, in the RemoteObject. What to fetch is decided above: the
 * read path (chunk-reader.ts), the readahead runner, hydration and prefetch are its clients.
 */

/** How much of a queued readahead GET a reader who needs it takes along at foreground priority. */
const PROMOTE_BYTES = 1024 * 1024;

export interface FetcherOptions {
  maxConcurrentFetches: number;
  maxReadaheadFetches: number;
  maxBackgroundFetches: number;
  coalesceGapBytes: number;
}

export interface RequestOptions {
  /** The readahead stream the chunks are for: they wait apart from the LRU until read (readahead only). */
  streamId?: number;
  /** Largest single GET. Default unlimited. */
  maxBytes?: number;
}

interface Deferred {
  promise: Promise<Lease>;
  resolve(chunk: Lease): void;
  reject(error: unknown): void;
}

function deferred(): Deferred {
  let resolve!: (c: Lease) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<Lease>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a readahead chunk nobody awaited must not be an unhandled rejection
  return { promise, resolve, reject };
}

/** One ranged GET covering chunks [first, last], with a waiter per chunk it brings in. */
class RangeFetch implements SchedulerTask {
  readonly controller = new AbortController();
  readonly waiters = new Map<number, Deferred>();
  readonly offset: number;
  readonly bytes: number;
  started = false;
  /** A reader waits on it (readahead chunks it brings are not counted as prefetched). */
  awaited: boolean;

  constructor(
    private readonly owner: ChunkFetcher,
    layout: ChunkLayout,
    readonly first: number,
    readonly last: number,
    public priority: FetchPriority,
    readonly streamId: number | undefined,
  ) {
    this.offset = layout.start(first);
    this.bytes = layout.end(last) - this.offset;
    this.awaited = priority === 'foreground';
  }

  run(): Promise<void> {
    this.started = true;
    return this.owner.runFetch(this);
  }

  skip(reason: Error): void {
    this.owner.settleFailed(this, reason);
  }

  wanted(): boolean {
    return this.awaited || this.streamId === undefined || this.owner.streamAlive(this.streamId);
  }
}

interface InFlight {
  fetch: RangeFetch;
  waiter: Deferred;
  /** A reader joined it (a readahead chunk that was then used). */
  joined: boolean;
  /** Stream readahead: counts toward the readahead budget until it arrives. */
  ahead: boolean;
}

export class ChunkFetcher {
  private readonly log = logger('cache');
  private readonly scheduler: FetchScheduler;
  private readonly inFlight = new Map<number, InFlight>();
  /** Where bridged chunks (re-fetched while held) are received: written, never read. */
  private bridgeScratch: Buffer | undefined;
  private aheadInFlight = 0;
  private running = 0;
  private isClosed = false;
  private readonly coalesceGapBytes: number;
  readonly counters = {
    joins: 0,
    foregroundFetches: 0,
    readaheadFetches: 0,
    backgroundFetches: 0,
    fetchedBytes: 0,
    readaheadBytes: 0,
    backgroundBytes: 0,
    failedFetches: 0,
    /** Readahead bytes a reader joined while they were in flight (used, though never stored unused). */
    readaheadJoinedBytes: 0,
  };

  constructor(
    private readonly remote: RemoteObject,
    private readonly layout: ChunkLayout,
    private readonly store: ChunkStore,
    options: FetcherOptions,
    /** Is the readahead stream still alive (its queued GETs still worth running)? */
    readonly streamAlive: (streamId: number) => boolean,
  ) {
    this.coalesceGapBytes = options.coalesceGapBytes;
    this.scheduler = new FetchScheduler({
      maxConcurrent: options.maxConcurrentFetches,
      maxReadahead: options.maxReadaheadFetches,
      maxBackground: options.maxBackgroundFetches,
      admit: (task) => this.store.admit(task.bytes, task.priority === 'foreground'),
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Bytes of stream readahead requested (queued or in flight) and not yet arrived. */
  get aheadInFlightBytes(): number {
    return this.aheadInFlight;
  }

  get runningFetches(): number {
    return this.running;
  }

  get queuedFetches(): number {
    return this.scheduler.queued;
  }

  isInFlight(c: number): boolean {
    return this.inFlight.has(c);
  }

  /** The chunk's arrival if it is being fetched (without counting as a reader's join). */
  pending(c: number): Promise<Lease> | undefined {
    return this.inFlight.get(c)?.waiter.promise;
  }

  /**
   * A reader needing chunks [firstNeeded, lastNeeded] waits on chunk `c` if it is in flight. A queued
   * readahead or background GET carrying it is promoted (see promoteQueued).
   */
  join(c: number, firstNeeded: number, lastNeeded: number): Promise<Lease> | undefined {
    let flight = this.inFlight.get(c);
    if (!flight) return undefined;
    this.counters.joins++;
    if (!flight.fetch.started && flight.fetch.priority !== 'foreground') {
      this.promoteQueued(flight.fetch, firstNeeded, lastNeeded);
      flight = this.inFlight.get(c)!;
    }
    flight.fetch.awaited = true;
    flight.joined = true;
    return flight.waiter.promise;
  }

  /**
   * Fetches `chunks` (sorted, none held or in flight) in coalesced GETs of at most `maxBytes` at
   * `priority`, and returns each chunk's arrival. Every chunk is in flight from this call on.
   */
  request(
    chunks: readonly number[],
    priority: FetchPriority,
    options: RequestOptions = {},
  ): Array<[number, Promise<Lease>]> {
    const arrivals: Array<[number, Promise<Lease>]> = [];
    for (const fetch of this.plan(chunks, priority, options.streamId, options.maxBytes ?? Infinity)) {
      for (const [c, w] of fetch.waiters) arrivals.push([c, w.promise]);
      this.scheduler.submit(fetch);
    }
    return arrivals;
  }

  /**
   * Brings chunks [first, last] ahead of need (prefetch, hydration): waits for those in flight, fetches
   * those `held` says are absent at `priority` in GETs of at most `maxBytes`, and resolves when all settle.
   */
  bring(
    first: number,
    last: number,
    priority: FetchPriority,
    maxBytes: number,
    held: (c: number) => boolean,
  ): Promise<PromiseSettledResult<Lease>[]> {
    const waits: Array<Promise<Lease>> = [];
    const missing: number[] = [];
    for (let c = first; c <= last; c++) {
      const flight = this.pending(c);
      if (flight) waits.push(flight);
      else if (!held(c)) missing.push(c);
    }
    for (const [, arrival] of this.request(missing, priority, { maxBytes })) waits.push(arrival);
    return Promise.allSettled(waits);
  }

  /**
   * Object bytes [from, to) outside the chunk LRU (a read too large to cache, a metadata gap): from the
   * disk tier when it holds all of it, else in one foreground GET whose whole chunks go to the disk tier.
   */
  async fetchRange(from: number, to: number): Promise<Uint8Array> {
    const local = await this.store.readFromDisk(from, to);
    if (local) return local;
    const length = to - from;
    this.counters.foregroundFetches++;
    const data = await this.remote.fetch(from, length);
    if (data.length !== length)
      throw new Error(`${this.remote.name}: fetch [${from}, +${length}) returned ${data.length} bytes`);
    this.counters.fetchedBytes += length;
    this.store.persistWholeChunks(from, data);
    return data;
  }

  /** Drops queued GETs (their waiters reject with `reason`) and aborts running ones. */
  close(reason: Error): void {
    this.isClosed = true;
    this.scheduler.close(reason);
    for (const { fetch } of this.inFlight.values()) fetch.controller.abort(reason);
  }

  /**
   * Groups chunks into ranged fetches: adjacent ones join, and a gap up to `coalesceGapBytes` of chunks
   * not in flight is bridged. Registers every chunk as in flight.
   */
  private plan(chunks: readonly number[], priority: FetchPriority, streamId: number | undefined, maxBytes: number) {
    const fetches: RangeFetch[] = [];
    const { chunkBytes } = this.layout;
    const maxGapChunks = Math.floor(this.coalesceGapBytes / chunkBytes);
    const maxChunks = Math.max(1, Math.floor(maxBytes / chunkBytes));
    let i = 0;
    while (i < chunks.length) {
      const runFirst = chunks[i]!;
      let runLast = runFirst;
      const run = [runFirst];
      i++;
      while (i < chunks.length) {
        const next = chunks[i]!;
        const gap = next - runLast - 1;
        if (next - runFirst + 1 > maxChunks) break;
        if (gap > 0 && (gap > maxGapChunks || !this.bridgeable(runLast + 1, next - 1))) break;
        run.push(next);
        runLast = next;
        i++;
      }
      const fetch = new RangeFetch(this, this.layout, runFirst, runLast, priority, streamId);
      const ahead = priority === 'readahead' && streamId !== undefined;
      for (const c of run) {
        const waiter = deferred();
        fetch.waiters.set(c, waiter);
        this.inFlight.set(c, { fetch, waiter, joined: false, ahead });
        if (ahead) this.aheadInFlight += this.layout.bytesOf(c);
      }
      fetches.push(fetch);
    }
    return fetches;
  }

  private bridgeable(first: number, last: number): boolean {
    for (let c = first; c <= last; c++) if (this.inFlight.has(c)) return false;
    return true;
  }

  /**
   * A reader needs chunks [firstNeeded, lastNeeded] of a readahead or hydration fetch that has not
   * started: fetch that part now as a foreground request and leave the rest queued in its class, so
   * the reader does not wait for a whole multi-MiB GET.
   */
  private promoteQueued(fetch: RangeFetch, firstNeeded: number, lastNeeded: number): void {
    if (!this.scheduler.withdraw(fetch)) return;
    const from = Math.max(firstNeeded, fetch.first);
    // A reader caught up with its stream's queued readahead reads on from here: bring the next
    // PROMOTE_BYTES with it, or every following read pays a round trip (and a one-block GET) of its own.
    const follow =
      fetch.streamId === undefined ? 0 : Math.max(0, Math.floor(PROMOTE_BYTES / this.layout.chunkBytes) - 1);
    const to = Math.min(fetch.last, Math.max(lastNeeded, from + follow));
    const parts: Array<[number, number, FetchPriority]> = [[from, to, 'foreground']];
    if (fetch.first < from) parts.push([fetch.first, from - 1, fetch.priority]);
    if (to < fetch.last) parts.push([to + 1, fetch.last, fetch.priority]);
    for (const [first, last, priority] of parts) {
      const part = new RangeFetch(this, this.layout, first, last, priority, fetch.streamId);
      for (const [c, waiter] of fetch.waiters) {
        if (c < first || c > last) continue;
        part.waiters.set(c, waiter);
        const entry = this.inFlight.get(c);
        if (entry) entry.fetch = part;
      }
      if (part.waiters.size > 0) this.scheduler.submit(part);
    }
  }

  /** @internal the scheduler runs an admitted fetch: disk tier first, then one GET for the rest. */
  async runFetch(fetch: RangeFetch): Promise<void> {
    const kind = fetch.priority;
    this.running++;
    try {
      const chunks = await this.store.loadFromDisk([...fetch.waiters.keys()]);
      const needed = [...fetch.waiters.keys()].filter((c) => !chunks.has(c)).sort((a, b) => a - b);
      if (needed.length > 0) {
        if (kind === 'foreground') this.counters.foregroundFetches++;
        else if (kind === 'readahead') this.counters.readaheadFetches++;
        else this.counters.backgroundFetches++;
        const first = needed[0]!;
        const last = needed[needed.length - 1]!;
        const length = this.layout.end(last) - this.layout.start(first);
        if (this.store.persistent) await this.fetchToOwnBuffers(fetch, first, last, chunks);
        else await this.fetchIntoSlots(fetch, first, last, chunks);
        this.counters.fetchedBytes += length;
        if (kind === 'readahead') this.counters.readaheadBytes += length;
        if (kind === 'background') this.counters.backgroundBytes += length;
      }
      this.store.unreserve(fetch.bytes);
      for (const [c, waiter] of fetch.waiters) {
        const chunk = chunks.get(c)!;
        const entry = this.inFlight.get(c);
        const joined = entry?.joined ?? false;
        this.forgetInFlight(c);
        if (kind === 'readahead' && joined) this.counters.readaheadJoinedBytes += chunk.bytes.length;
        // Hydration into a disk cache leaves the memory working set alone.
        const keep = !(kind === 'background' && this.store.persistent) || joined;
        const early = kind !== 'foreground' && !joined;
        if (!this.isClosed && keep) this.store.set(c, chunk, early, early && entry?.ahead ? fetch.streamId : undefined);
        else this.store.release(chunk);
        waiter.resolve(chunk);
      }
      this.store.notePeak();
    } catch (error) {
      this.store.unreserve(fetch.bytes);
      this.counters.failedFetches++;
      if (kind === 'foreground' || fetch.awaited)
        this.log.debug(`fetch [${fetch.offset}, +${fetch.bytes}) failed: ${String(error)}`);
      this.settleFailed(fetch, error);
    } finally {
      this.running--;
    }
  }

  /** @internal rejects every waiter of a fetch that failed or was dropped; nothing is stored. */
  settleFailed(fetch: RangeFetch, error: unknown): void {
    for (const [c, waiter] of fetch.waiters) {
      if (this.inFlight.get(c)?.fetch === fetch) this.forgetInFlight(c);
      waiter.reject(error);
    }
  }

  private forgetInFlight(c: number): void {
    const entry = this.inFlight.get(c);
    if (!entry) return;
    if (entry.ahead) this.aheadInFlight -= this.layout.bytesOf(c);
    this.inFlight.delete(c);
  }

  /**
   * Chunks [first, last] fetched in one GET straight into arena slots: one slot per chunk a waiter
   * wants (the rest, bridged gaps, land in a scratch buffer nobody reads). The slots go back when the
   * fetch fails.
   */
  private async fetchIntoSlots(fetch: RangeFetch, first: number, last: number, into: Map<number, Lease>) {
    const taken = new Map<number, Lease>();
    const targets: Uint8Array[] = [];
    for (let c = first; c <= last; c++) {
      const length = this.layout.bytesOf(c);
      if (fetch.waiters.has(c)) {
        const chunk = this.store.take(length);
        taken.set(c, chunk);
        targets.push(chunk.bytes);
      } else {
        this.bridgeScratch ??= Buffer.allocUnsafeSlow(this.layout.chunkBytes);
        targets.push(this.bridgeScratch.subarray(0, length));
      }
    }
    try {
      await this.receive(this.layout.start(first), targets, fetch.controller.signal);
    } catch (e) {
      for (const chunk of taken.values()) this.store.release(chunk);
      throw e;
    }
    for (const [c, chunk] of taken) into.set(c, chunk);
  }

  /** Chunks [first, last] fetched in one GET into buffers of their own, each also written to the disk tier. */
  private async fetchToOwnBuffers(fetch: RangeFetch, first: number, last: number, into: Map<number, Lease>) {
    const targets: Uint8Array[] = [];
    for (let c = first; c <= last; c++) targets.push(Buffer.allocUnsafe(this.layout.bytesOf(c)));
    await this.receive(this.layout.start(first), targets, fetch.controller.signal);
    for (let c = first; c <= last; c++) {
      const bytes = targets[c - first]!;
      if (fetch.waiters.has(c) && !into.has(c)) into.set(c, new Lease(bytes));
      this.store.persist(c, bytes);
    }
  }

  /** The object's bytes from `offset` into `targets`, one after another (fetchInto, or fetch and copy). */
  private async receive(offset: number, targets: Uint8Array[], signal: AbortSignal): Promise<void> {
    const length = targets.reduce((sum, t) => sum + t.length, 0);
    if (this.remote.fetchInto) return this.remote.fetchInto(offset, targets, signal);
    const data = await this.remote.fetch(offset, length, signal);
    if (data.length !== length)
      throw new Error(`${this.remote.name}: fetch [${offset}, +${length}) returned ${data.length} bytes`);
    let at = 0;
    for (const t of targets) {
      t.set(data.subarray(at, at + t.length));
      at += t.length;
    }
  }
}

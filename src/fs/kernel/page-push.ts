import { write } from 'node:fs';
import { createRequire } from 'node:module';
import type * as WorkerThreads from 'node:worker_threads';
import type { SquashfsImage } from '../../squashfs/image.js';
import type { SquashfsInode } from '../../squashfs/inode.js';
import { describeError, logger } from '../../util/log.js';
import { SMALL_THREAD } from './reader-thread.js';
import { Notify, NOTIFY_STORE_OUT_SIZE, OUT_HEADER_SIZE, writeOutHeader, writeU64 } from './protocol.js';

const log = logger('fs');

export interface PushOptions {
  /** Bytes of small files pushed per directory listing (0: pushing is off). */
  perDirectoryBytes: number;
  /** Only files up to this size are pushed; bigger ones are streamed by readahead when read. */
  maxFileBytes: number;
  /** Bytes decoded and waiting for the writer at most; beyond it listings push nothing more. */
  maxQueuedBytes: number;
  /**
   * Write the stores on libuv's pool, two at a time, rather than on a worker thread of their own
   * (50-150 ms of CPU to boot): for a process that only serves (MountOptions.servesOnly). Two pool
   * threads may then wait on page locks; two are left for a local image's reads, which a READ
   * holding those locks may need.
   */
  writeOnPool?: boolean;
}

/** What the pusher reports in the mount's stats. */
export interface PushStats {
  pushedFiles: number;
  pushedBytes: number;
  /** Listed small files not pushed: over a listing's or the queue's byte bound. */
  skippedFiles: number;
  /** Queued files a READ reached before their push (the walk outran the pushes). */
  overtakenFiles: number;
  /** Pushes queued or being written now. */
  pendingPushes: number;
}

export const PUSH_DEFAULTS: PushOptions = {
  perDirectoryBytes: 4 << 20,
  maxFileBytes: 128 << 10,
  maxQueuedBytes: 32 << 20,
};

/**
 * The writer thread's code: writes FUSE_NOTIFY_STORE messages to /dev/fuse. They must not be written
 * from the thread that answers requests: the kernel locks a file's pages to store into them, and a
 * READ of that file holding them waits for an answer only that thread can give. Here a store that
 * waits holds up only later stores. Source text: it runs the same from dist/ and under test.
 */
const WRITER_SOURCE = `
const { writeSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
parentPort.on('message', (message) => {
  let ok = true;
  try {
    writeSync(workerData.fd, message);
  } catch {
    // ENOENT: the kernel no longer has that inode; ENODEV: unmounted. A store is only a hint.
    ok = false;
  }
  parentPort.postMessage(ok ? message.byteLength : -message.byteLength);
});
`;

/** Stores in flight to the writer thread at most (each is one write(2) there). */
const WRITER_DEPTH = 8;
/** The same on libuv's pool (see PushOptions.writeOnPool). */
const POOL_WRITER_DEPTH = 2;

interface Pending {
  nodeid: number;
  inode: SquashfsInode;
}

/**
 * Small files of a listed directory, handed to the kernel's page cache (FUSE_NOTIFY_STORE) before
 * anyone opens them: a listing says its files are about to be read (find, cp -r, tar, a build), and
 * a file whose pages are cached is read with no request at all. mksquashfs packs a directory's small
 * files into shared fragment blocks, so the bytes are one decode away once the listing's data has
 * arrived (the subtree hint fetches it); a directory whose data was not hinted is not pushed, so a
 * push never costs a GET. Bounded per listing and in total; files already read or pushed are
 * skipped. The kernel may drop the pages under memory pressure: they are a cache.
 */
export class PagePusher {
  private readonly queue: Pending[] = [];
  private queuedBytes = 0;
  /** Node ids whose bytes the kernel has (pushed, or read through a READ): not pushed again. */
  private readonly done = new Set<number>();
  /** Node ids waiting in `queue`; a READ of one takes it out (its pages are then the READ's). */
  private readonly queued = new Set<number>();
  private writer: WorkerThreads.Worker | undefined;
  private inWriter = 0;
  private running = false;
  private closed = false;
  pushedFiles = 0;
  pushedBytes = 0;
  skippedFiles = 0;
  /** Queued files a READ reached first (the walk outran the pushes). */
  overtakenFiles = 0;

  constructor(
    private readonly fd: number,
    private readonly image: SquashfsImage,
    private readonly options: PushOptions,
  ) {}

  get enabled(): boolean {
    return this.options.perDirectoryBytes > 0;
  }

  /**
   * Entries of one READDIRPLUS reply of `dir` (the kernel now holds their inodes): queue their small
   * files once the directory's data is at hand. A push never fetches: it only saves the READs of
   * bytes the subtree hint brought (or a local image holds).
   */
  listed(dir: SquashfsInode, entries: readonly Pending[]): void {
    if (!this.enabled || this.closed || !entries.some((e) => this.wanted(e))) return;
    // The writer thread boots (tens of ms of CPU) while the listing's data arrives and decodes,
    // not after: a walk reads the first files moments after listing them.
    if (!this.options.writeOnPool) this.writer ??= this.startWriter();
    this.image.filesAtHand(dir).then(
      (here) => {
        if (here) this.queueFiles(entries);
      },
      () => undefined,
    );
  }

  private wanted(e: Pending): boolean {
    const size = e.inode.stat.size;
    return e.inode.stat.type === 'file' && size > 0 && size <= this.options.maxFileBytes && !this.done.has(e.nodeid);
  }

  private queueFiles(entries: readonly Pending[]): void {
    if (this.closed) return;
    let budget = this.options.perDirectoryBytes;
    for (const e of entries) {
      if (!this.wanted(e)) continue;
      const size = e.inode.stat.size;
      if (size > budget || this.queuedBytes + size > this.options.maxQueuedBytes) {
        this.skippedFiles++;
        continue;
      }
      budget -= size;
      this.queuedBytes += size;
      this.done.add(e.nodeid);
      this.queued.add(e.nodeid);
      this.queue.push(e);
    }
    if (!this.running && this.queue.length > 0) void this.run();
  }

  /** A READ reached us: the kernel has (or is getting) that file's pages. */
  read(nodeid: number): void {
    if (!this.enabled) return;
    this.done.add(nodeid);
    if (this.queued.delete(nodeid)) this.overtakenFiles++;
  }

  /** Files queued or being written: 0 once every push so far has landed or been given up. */
  get pendingFiles(): number {
    return this.queue.length + this.inWriter;
  }

  /** The kernel dropped the inode, and its pages with it. */
  forgotten(nodeid: number): void {
    this.done.delete(nodeid);
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.queued.clear();
    void this.writer?.terminate();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (!this.closed && this.queue.length > 0) {
        const next = this.queue.shift()!;
        const size = next.inode.stat.size;
        this.queuedBytes -= size;
        // Read meanwhile: the kernel has the pages; a store now would only copy them again.
        if (!this.queued.delete(next.nodeid)) continue;
        const message = Buffer.allocUnsafeSlow(OUT_HEADER_SIZE + NOTIFY_STORE_OUT_SIZE + size);
        const data = message.subarray(OUT_HEADER_SIZE + NOTIFY_STORE_OUT_SIZE);
        let n: number;
        try {
          n = this.image.readIntoNow(next.inode, 0, data) ?? (await this.image.readInto(next.inode, 0, data));
        } catch (e) {
          // Only a hint: the file's own READ reports what is wrong with it.
          if (log.enabled('debug')) log.debug(`push of node ${next.nodeid}: ${describeError(e)}`);
          this.done.delete(next.nodeid);
          continue;
        }
        if (this.closed) return;
        const len = OUT_HEADER_SIZE + NOTIFY_STORE_OUT_SIZE + n;
        writeOutHeader(message, len, Notify.STORE, 0n);
        writeU64(message, OUT_HEADER_SIZE, next.nodeid);
        writeU64(message, OUT_HEADER_SIZE + 8, 0);
        message.writeUInt32LE(n, OUT_HEADER_SIZE + 16);
        message.writeUInt32LE(0, OUT_HEADER_SIZE + 20);
        await this.send(message.subarray(0, len));
      }
    } finally {
      this.running = false;
    }
  }

  private waiting: (() => void) | undefined;

  private send(message: Buffer): Promise<void> {
    this.inWriter++;
    if (this.options.writeOnPool) {
      write(this.fd, message, 0, message.length, null, (e) => this.written(e === null ? message.length : -1));
      if (this.inWriter < POOL_WRITER_DEPTH) return Promise.resolve();
    } else {
      const writer = (this.writer ??= this.startWriter());
      writer.postMessage(message, [message.buffer as ArrayBuffer]);
      if (this.inWriter < WRITER_DEPTH) return Promise.resolve();
    }
    return new Promise((resume) => {
      this.waiting = resume;
    });
  }

  /** A store has been written (`written` > 0: its bytes, header included) or refused. */
  private written(written: number): void {
    this.inWriter--;
    if (written > 0) {
      this.pushedFiles++;
      this.pushedBytes += written - OUT_HEADER_SIZE - NOTIFY_STORE_OUT_SIZE;
    }
    const resume = this.waiting;
    this.waiting = undefined;
    resume?.();
  }

  private startWriter(): WorkerThreads.Worker {
    // Required here: a server that serves only (the CLI's) writes on libuv's pool and never needs it.
    const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof WorkerThreads;
    const writer = new Worker(WRITER_SOURCE, { eval: true, workerData: { fd: this.fd }, resourceLimits: SMALL_THREAD });
    writer.unref();
    writer.on('message', (written: number) => this.written(written));
    writer.on('error', (e) => log.warn(`page-cache writer: ${describeError(e)}`));
    return writer;
  }
}

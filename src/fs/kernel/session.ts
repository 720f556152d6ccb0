import { writeSync, writevSync } from 'node:fs';
import { keyBytes, nameKey } from '../../squashfs/listing.js';
import type { SquashfsImage } from '../../squashfs/image.js';
import type { SquashfsInode } from '../../squashfs/inode.js';
import { S_IFMT_OF, type FileType, type Stat } from '../../squashfs/types.js';
import { describeError, logger } from '../../util/log.js';
import { Deadlines, type Reply } from '../deadlines.js';
import { Errno, errnoOf } from '../errno.js';
import type { OperationStats } from '../operations.js';
import { PagePusher, type PushOptions, type PushStats } from './page-push.js';
import {
  ATTR_OUT_SIZE,
  type Attr,
  cString,
  direntSize,
  ENTRY_OUT_SIZE,
  FOPEN_CACHE_DIR,
  FOPEN_KEEP_CACHE,
  FUSE_KERNEL_MINOR,
  FUSE_KERNEL_VERSION,
  FUSE_MIN_MINOR,
  FUSE_ROOT_ID,
  GETXATTR_OUT_SIZE,
  IN_HEADER_SIZE,
  INIT_OUT_SIZE,
  InitFlag,
  MAX_MAX_PAGES,
  Op,
  OP_NAMES,
  OPEN_OUT_SIZE,
  OUT_HEADER_SIZE,
  readInHeader,
  readReadIn,
  readU64,
  STATFS_OUT_SIZE,
  WRITE_OPCODES,
  writeAttr,
  writeDirent,
  writeEntryOut,
  writeOutHeader,
  writeU64,
} from './protocol.js';

const log = logger('fs');

/** DT_* values for dirents, by file type. */
const DT: Record<FileType, number> = {
  fifo: 1,
  'char-device': 2,
  directory: 4,
  'block-device': 6,
  file: 8,
  symlink: 10,
  socket: 12,
};

const W_OK = 2;
/** Reply buffers kept for reuse (reads waiting at once beyond this get buffers that are dropped). */
const REPLY_BUFFERS_KEPT = 4;
/**
 * Background requests (readahead READs) the kernel keeps in flight at most: libfuse's 12. Each waits
 * on the network with a 1 MiB reply buffer, and many at once look like random reads to the source's
 * readahead detector.
 */
const MAX_BACKGROUND = 12;
/** Settles a tracked request without a reply: its work answered it. */
const DONE = 1;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

export interface KernelSessionOptions {
  /** Seconds the kernel may trust entries and attributes (the image never changes). */
  cacheTimeoutSeconds: number;
  /** A request whose work is still unfinished after this long is answered ETIMEDOUT. */
  operationTimeoutMs: number;
  /** Small files of listed directories handed to the page cache (see page-push.ts). */
  push: PushOptions;
}

/** What the kernel holds of one node: its inode, lookups to forget, and where it was listed. */
interface Node {
  readonly inode: SquashfsInode;
  lookups: number;
  /** The directory it was last listed or looked up in (its ".." in a listing). */
  parent: number;
}

/**
 * A FUSE session spoken directly over /dev/fuse (no libfuse): requests in as the kernel wrote them,
 * replies written back with one write(2) each from this thread. Node ids are inode locations
 * (reference + 2; the root is 1), so hard links share one, and names stay exact bytes.
 */
export class KernelSession {
  private readonly nodes = new Map<number, Node>();
  private readonly pusher: PagePusher;
  private readonly deadlines: Deadlines;
  private readonly counters = { operations: 0, errors: 0, ioErrors: 0, readsInFlight: 0, bytesRead: 0 };
  private readonly byOperation: Record<string, { count: number; errors: number }> = {};
  /** One reply buffer for answers given at once (writeSync copies it out before the next request). */
  private scratch = Buffer.allocUnsafeSlow(OUT_HEADER_SIZE + (1 << 20));
  private maxRead = 128 << 10;
  /**
   * Reply buffers for reads that wait, used again and again: a fresh 1 MiB buffer per READ is a page
   * fault per 4 KiB written on first use (~4 ms of CPU per MiB on a VM), a GiB of them per GiB read.
   */
  private readonly replyBuffers = new BufferPool(OUT_HEADER_SIZE + (1 << 20), REPLY_BUFFERS_KEPT);
  private readonly rootRef: number;
  private closed = false;
  /** Flags the kernel offered in INIT (NO_OPEN_SUPPORT decides how OPEN is answered). */
  private kernelFlags = 0;

  constructor(
    private readonly fd: number,
    private readonly image: SquashfsImage,
    root: SquashfsInode,
    private readonly options: KernelSessionOptions,
    private readonly onDestroy: () => void,
  ) {
    this.rootRef = root.ref;
    this.nodes.set(FUSE_ROOT_ID, { inode: root, lookups: 1, parent: FUSE_ROOT_ID });
    this.deadlines = new Deadlines(options.operationTimeoutMs);
    this.pusher = new PagePusher(fd, image, options.push);
  }

  close(): void {
    this.closed = true;
    this.deadlines.stop();
    this.pusher.close();
  }

  stats(): OperationStats & PushStats & { nodes: number } {
    return {
      ...this.counters,
      pushedFiles: this.pusher.pushedFiles,
      pushedBytes: this.pusher.pushedBytes,
      skippedFiles: this.pusher.skippedFiles,
      overtakenFiles: this.pusher.overtakenFiles,
      pendingPushes: this.pusher.pendingFiles,
      timedOut: this.deadlines.timedOut,
      byOperation: structuredClone(this.byOperation),
      pathCache: { entries: 0, hits: 0, misses: 0 },
      nodes: this.nodes.size,
    };
  }

  private nodeIdOf(ref: number): number {
    return ref === this.rootRef ? FUSE_ROOT_ID : ref + 2;
  }

  /** One request as read from /dev/fuse. Never throws: every failure becomes an errno reply. */
  handle(req: Buffer): void {
    if (req.length < IN_HEADER_SIZE) return;
    const h = readInHeader(req);
    const name = OP_NAMES[h.opcode] ?? `op${h.opcode}`;
    this.counters.operations++;
    try {
      this.dispatch(h.opcode, name, h.unique, h.nodeid, req);
    } catch (e) {
      this.fail(name, h.unique, e);
    }
  }

  private dispatch(opcode: number, name: string, unique: bigint, nodeid: number, req: Buffer): void {
    switch (opcode) {
      case Op.INIT:
        this.init(unique, req);
        return;
      case Op.DESTROY:
        this.replyEmpty(name, unique);
        this.onDestroy();
        return;
      case Op.FORGET:
        this.count(name, false);
        this.forget(nodeid, readU64(req, IN_HEADER_SIZE));
        return;
      case Op.BATCH_FORGET: {
        this.count(name, false);
        const n = req.readUInt32LE(IN_HEADER_SIZE);
        for (let i = 0, at = IN_HEADER_SIZE + 8; i < n && at + 16 <= req.length; i++, at += 16) {
          this.forget(readU64(req, at), readU64(req, at + 8));
        }
        return;
      }
      case Op.INTERRUPT:
        // Every request is answered anyway, soon or at its deadline; nothing to cancel.
        this.count(name, false);
        return;
      case Op.LOOKUP:
        this.lookup(name, unique, nodeid, cString(req, IN_HEADER_SIZE, req.length));
        return;
      case Op.GETATTR:
        this.withNode(name, unique, nodeid, (node) => this.replyAttr(name, unique, node.inode.stat));
        return;
      case Op.OPEN:
        // Kernels that offer no-open take ENOSYS as "no opens needed": no OPEN or RELEASE per file
        // from then on, and pages kept across opens. Older ones get a handle that keeps the cache.
        if (this.kernelFlags & InitFlag.NO_OPEN_SUPPORT) {
          this.replyNotNeeded(name, unique);
          return;
        }
        this.replyOpen(name, unique, FOPEN_KEEP_CACHE);
        return;
      case Op.OPENDIR:
        if (this.kernelFlags & InitFlag.NO_OPENDIR_SUPPORT) {
          this.replyNotNeeded(name, unique);
          return;
        }
        this.replyOpen(name, unique, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR);
        return;
      case Op.RELEASE:
      case Op.RELEASEDIR:
        this.replyEmpty(name, unique);
        return;
      case Op.READ: {
        const { offset, size } = readReadIn(req);
        this.read(name, unique, nodeid, offset, size);
        return;
      }
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const { offset, size } = readReadIn(req);
        this.readdir(name, unique, nodeid, offset, size, opcode === Op.READDIRPLUS);
        return;
      }
      case Op.READLINK:
        this.withNodeAsync(name, unique, nodeid, async (node) => {
          const target = await this.image.readlinkBytes(node.inode);
          this.replyData(name, unique, target);
        });
        return;
      case Op.STATFS:
        this.statfs(name, unique);
        return;
      case Op.ACCESS: {
        const mask = req.readUInt32LE(IN_HEADER_SIZE);
        this.withNode(name, unique, nodeid, () =>
          mask & W_OK ? this.replyError(name, unique, Errno.EROFS) : this.replyEmpty(name, unique),
        );
        return;
      }
      case Op.GETXATTR: {
        const size = req.readUInt32LE(IN_HEADER_SIZE);
        const attr = cString(req, IN_HEADER_SIZE + 8, req.length).toString('latin1');
        this.getxattr(name, unique, nodeid, attr, size);
        return;
      }
      case Op.LISTXATTR:
        this.listxattr(name, unique, nodeid, req.readUInt32LE(IN_HEADER_SIZE));
        return;
      default:
        if (WRITE_OPCODES.has(opcode)) {
          this.replyError(name, unique, Errno.EROFS);
          return;
        }
        // FLUSH, FSYNC, locks, POLL, LSEEK, IOCTL, BMAP, STATX: ENOSYS, which for most of them the
        // kernel remembers and then handles itself (locks locally, lseek generically, no flush).
        this.replyNotNeeded(name, unique);
        return;
    }
  }

  private init(unique: bigint, req: Buffer): void {
    const major = req.readUInt32LE(IN_HEADER_SIZE);
    const minor = req.readUInt32LE(IN_HEADER_SIZE + 4);
    const maxReadahead = req.readUInt32LE(IN_HEADER_SIZE + 8);
    const flags = req.readUInt32LE(IN_HEADER_SIZE + 12);
    if (major !== FUSE_KERNEL_VERSION || minor < FUSE_MIN_MINOR) {
      log.error(`kernel FUSE protocol ${major}.${minor} is older than this engine needs (7.${FUSE_MIN_MINOR})`);
      this.replyError('init', unique, Errno.EPROTO);
      return;
    }
    this.kernelFlags = flags;
    const want =
      InitFlag.ASYNC_READ |
      InitFlag.DO_READDIRPLUS |
      InitFlag.PARALLEL_DIROPS |
      InitFlag.MAX_PAGES |
      InitFlag.CACHE_SYMLINKS;
    const granted = flags & want;
    const maxPages = granted & InitFlag.MAX_PAGES ? MAX_MAX_PAGES : 32;
    this.maxRead = maxPages * 4096;
    const b = this.scratch;
    const len = OUT_HEADER_SIZE + INIT_OUT_SIZE;
    b.fill(0, 0, len);
    writeOutHeader(b, len, 0, unique);
    let at = OUT_HEADER_SIZE;
    b.writeUInt32LE(FUSE_KERNEL_VERSION, at);
    b.writeUInt32LE(Math.min(minor, FUSE_KERNEL_MINOR), at + 4);
    b.writeUInt32LE(maxReadahead, at + 8);
    b.writeUInt32LE(granted, at + 12);
    b.writeUInt16LE(MAX_BACKGROUND, at + 16); // max_background: readahead and async reads in flight
    b.writeUInt16LE((MAX_BACKGROUND * 3) >> 2, at + 18); // congestion_threshold
    b.writeUInt32LE(4096, at + 20); // max_write: writes are refused anyway
    b.writeUInt32LE(1_000_000_000, at + 24); // time_gran: whole seconds
    b.writeUInt16LE(maxPages, at + 28);
    at += INIT_OUT_SIZE;
    this.count('init', false);
    this.write(b.subarray(0, len));
  }

  private forget(nodeid: number, lookups: number): void {
    const node = this.nodes.get(nodeid);
    if (node === undefined || nodeid === FUSE_ROOT_ID) return;
    node.lookups -= lookups;
    if (node.lookups <= 0) {
      this.nodes.delete(nodeid);
      this.pusher.forgotten(nodeid);
    }
  }

  /** The node the kernel names; its inode is decoded again from the node id if it was forgotten. */
  private nodeOf(nodeid: number): Node | undefined {
    this.nodes.get(nodeid);
    return;
  }

  private async loadNode(nodeid: number): Promise<Node> {
    const known = this.nodes.get(nodeid);
    if (known !== undefined) return known;
    // The kernel only names nodes it was given; one we forgot early is still where its id says.
    const ref = nodeid === FUSE_ROOT_ID ? this.rootRef : nodeid - 2;
    const inode = await this.image.inode(ref);
    return { inode, lookups: 0, parent: FUSE_ROOT_ID };
  }

  /** Records a lookup the kernel now holds (LOOKUP reply or READDIRPLUS entry). */
  private remember(inode: SquashfsInode, parent: number): number {
    const id = this.nodeIdOf(inode.ref);
    const node = this.nodes.get(id);
    if (node === undefined) this.nodes.set(id, { inode, lookups: 1, parent });
    else {
      node.lookups++;
      node.parent = parent;
    }
    return id;
  }

  private withNode(name: string, unique: bigint, nodeid: number, work: (node: Node) => void): void {
    const node = this.nodeOf(nodeid);
    if (node !== undefined) work(node);
    else this.withNodeAsync(name, unique, nodeid, async (n) => work(n));
  }

  /** Runs async work for a request, with its deadline; any failure is the reply's errno. */
  private withNodeAsync(name: string, unique: bigint, nodeid: number, work: (node: Node) => Promise<void>): void {
    this.async(name, unique, async () => work(this.nodeOf(nodeid) ?? (await this.loadNode(nodeid))));
  }

  private async(name: string, unique: bigint, work: () => Promise<void>): void {
    // The work replies itself; the tracked reply only answers ETIMEDOUT when the deadline passes
    // first, and is settled with DONE (sends nothing) when the work ends. A work that ends after its
    // deadline still writes its reply: the kernel refuses it (ENOENT, unknown request), harmlessly.
    const tracked = this.deadlines.track(((code: number) => {
      if (code !== DONE) this.replyError(name, unique, code);
    }) as Reply);
    work().then(
      () => tracked(DONE),
      (e: unknown) => {
        if (tracked.timedOut) return;
        tracked(DONE);
        this.fail(name, unique, e);
      },
    );
  }

  private lookup(name: string, unique: bigint, parentId: number, nameBytes: Buffer): void {
    const parent = this.nodeOf(parentId);
    const listing = parent && this.image.listingNow(parent.inode);
    if (parent !== undefined && listing !== undefined) {
      const key = nameKey(nameBytes);
      const entry = listing.byName.get(key);
      if (entry === undefined) {
        this.replyEntry(name, unique, undefined, parentId);
        return;
      }
      const inode = this.image.inodeNow(entry.ref);
      if (inode !== undefined && inode.stat.ino === entry.ino) {
        this.replyEntry(name, unique, inode, parentId);
        return;
      }
    }
    // The request buffer is reused once this returns: the name goes on as a copy.
    const nameCopy = Buffer.from(nameBytes);
    this.withNodeAsync(name, unique, parentId, async (p) => {
      const inode = await this.image.lookupChildBytes(p.inode, nameCopy);
      this.replyEntry(name, unique, inode, parentId);
    });
  }

  private read(name: string, unique: bigint, nodeid: number, offset: number, size: number): void {
    const length = Math.min(size, this.maxRead);
    const node = this.nodeOf(nodeid);
    if (node !== undefined) {
      const target = this.scratch.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + length);
      const n = this.image.readIntoNow(node.inode, offset, target);
      if (n !== undefined) {
        this.pusher.read(nodeid);
        this.replyScratch(name, unique, n);
        return;
      }
    }
    this.counters.readsInFlight++;
    this.withNodeAsync(name, unique, nodeid, async (n) => {
      const buf = this.replyBuffers.acquire();
      try {
        const got = await this.image.readInto(n.inode, offset, buf.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + length));
        this.counters.bytesRead += got;
        this.replyBuffer(name, unique, buf, got);
        this.pusher.read(nodeid);
      } finally {
        this.counters.readsInFlight--;
        this.replyBuffers.release(buf);
      }
    });
  }

  private readdir(name: string, unique: bigint, nodeid: number, offset: number, size: number, plus: boolean): void {
    this.withNodeAsync(name, unique, nodeid, async (dir) => {
      const listing = await this.image.listing(dir.inode);
      const parent = this.nodes.get(dir.parent) ?? dir;
      const entries = listing.entries;
      // Cookies: 1 after ".", 2 after "..", 3 + i after entry i.
      const total = entries.length + 2;
      const buf = Buffer.allocUnsafe(OUT_HEADER_SIZE + size);
      let at = OUT_HEADER_SIZE;
      const end = OUT_HEADER_SIZE + size;
      // Inodes of the entries this reply can hold, decoded together (plus needs their attributes).
      const first = Math.max(0, offset - 2);
      const perEntry = plus ? ENTRY_OUT_SIZE + direntSize(1) : direntSize(1);
      const last = Math.min(entries.length, first + Math.ceil(size / perEntry));
      const inodes = await Promise.all(
        entries.slice(first, last).map((e) => this.image.inodeNow(e.ref) ?? this.image.entryInodeOf(e)),
      );
      const linked: { nodeid: number; inode: SquashfsInode }[] = [];
      for (let cookie = offset; cookie < total; cookie++) {
        let nameBytes: Buffer;
        let inode: SquashfsInode | undefined;
        let ino: number;
        let type: number;
        if (cookie === 0) {
          nameBytes = DOT;
          ino = dir.inode.stat.ino;
          type = DT.directory;
        } else if (cookie === 1) {
          nameBytes = DOTDOT;
          ino = parent.inode.stat.ino;
          type = DT.directory;
        } else {
          const i = cookie - 2;
          if (i >= last) break;
          const entry = entries[i]!;
          inode = inodes[i - first]!;
          nameBytes = keyBytes(entry.key);
          ino = entry.ino;
          type = DT[inode.stat.type];
        }
        const need = (plus ? ENTRY_OUT_SIZE : 0) + direntSize(nameBytes.length);
        if (at + need > end) break;
        if (plus) {
          if (inode !== undefined) {
            const id = this.remember(inode, nodeid);
            linked.push({ nodeid: id, inode });
            writeEntryOut(buf, at, id, this.options.cacheTimeoutSeconds, attrOf(inode.stat));
          } else {
            // "." and "..": no node id, so the kernel links nothing and counts no lookup.
            writeEntryOut(buf, at, 0, 0, undefined);
          }
          at += ENTRY_OUT_SIZE;
        }
        at += writeDirent(buf, at, ino, cookie + 1, type, nameBytes);
      }
      this.replyBuffer(name, unique, buf, at - OUT_HEADER_SIZE);
      // After the reply: the kernel has made the inodes the stores go into.
      this.pusher.listed(dir.inode, linked);
    });
  }

  private statfs(name: string, unique: bigint): void {
    const fs = this.image.statfs();
    const b = this.scratch;
    const len = OUT_HEADER_SIZE + STATFS_OUT_SIZE;
    b.fill(0, 0, len);
    writeOutHeader(b, len, 0, unique);
    const at = OUT_HEADER_SIZE;
    writeU64(b, at, fs.blocks);
    writeU64(b, at + 8, 0); // bfree
    writeU64(b, at + 16, 0); // bavail
    writeU64(b, at + 24, fs.files);
    writeU64(b, at + 32, 0); // ffree
    b.writeUInt32LE(fs.blockSize, at + 40); // bsize
    b.writeUInt32LE(fs.nameMax, at + 44);
    b.writeUInt32LE(fs.blockSize, at + 48); // frsize
    this.count(name, false);
    this.write(b.subarray(0, len));
  }

  private getxattr(name: string, unique: bigint, nodeid: number, attr: string, size: number): void {
    // An image without an xattr table: ENOSYS makes the kernel stop asking (EOPNOTSUPP from then on).
    if (!this.image.info.xattrs) {
      this.replyError(name, unique, Errno.ENOSYS);
      return;
    }
    this.withNodeAsync(name, unique, nodeid, async (node) => {
      const value = await this.image.getXattr(node.inode, attr);
      this.replySized(name, unique, Buffer.from(value), size);
    });
  }

  private listxattr(name: string, unique: bigint, nodeid: number, size: number): void {
    this.withNodeAsync(name, unique, nodeid, async (node) => {
      const names = await this.image.listXattrs(node.inode);
      this.replySized(name, unique, Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1'), size);
    });
  }

  /** getxattr/listxattr: size 0 asks for the length; a buffer too small is ERANGE. */
  private replySized(name: string, unique: bigint, value: Buffer, size: number): void {
    if (size === 0) {
      const b = Buffer.alloc(OUT_HEADER_SIZE + GETXATTR_OUT_SIZE);
      writeOutHeader(b, b.length, 0, unique);
      b.writeUInt32LE(value.length, OUT_HEADER_SIZE);
      this.count(name, false);
      this.write(b);
      return;
    }
    if (value.length > size) {
      this.replyError(name, unique, Errno.ERANGE);
      return;
    }
    this.replyData(name, unique, value);
  }

  // Replies. Each is one write(2) of header and body.

  private replyEntry(
    name: string,
    unique: bigint,
    inode: SquashfsInode | undefined,
    parent: number,
  ): void {
    const b = this.scratch;
    const len = OUT_HEADER_SIZE + ENTRY_OUT_SIZE;
    writeOutHeader(b, len, 0, unique);
    // A missing name is a negative entry (node id 0), cached as long as a positive one.
    const id = inode === undefined ? 0 : this.remember(inode, parent);
    writeEntryOut(b, OUT_HEADER_SIZE, id, this.options.cacheTimeoutSeconds, inode && attrOf(inode.stat));
    this.count(name, false);
    if (!this.write(b.subarray(0, len)) && inode !== undefined) this.forget(id, 1);
  }

  private replyAttr(name: string, unique: bigint, stat: Stat): void {
    const b = this.scratch;
    const len = OUT_HEADER_SIZE + ATTR_OUT_SIZE;
    writeOutHeader(b, len, 0, unique);
    writeU64(b, OUT_HEADER_SIZE, this.options.cacheTimeoutSeconds);
    b.writeUInt32LE(0, OUT_HEADER_SIZE + 8);
    b.writeUInt32LE(0, OUT_HEADER_SIZE + 12);
    writeAttr(b, OUT_HEADER_SIZE + 16, attrOf(stat));
    this.count(name, false);
    this.write(b.subarray(0, len));
  }

  private replyOpen(name: string, unique: bigint, flags: number): void {
    const b = this.scratch;
    const len = OUT_HEADER_SIZE + OPEN_OUT_SIZE;
    b.fill(0, 0, len);
    writeOutHeader(b, len, 0, unique);
    b.writeUInt32LE(flags, OUT_HEADER_SIZE + 8);
    this.count(name, false);
    this.write(b.subarray(0, len));
  }

  private replyScratch(name: string, unique: bigint, n: number): void {
    this.counters.bytesRead += n;
    writeOutHeader(this.scratch, OUT_HEADER_SIZE + n, 0, unique);
    this.count(name, false);
    this.write(this.scratch.subarray(0, OUT_HEADER_SIZE + n));
  }

  /** `buf` has room for the header before its `n` body bytes. */
  private replyBuffer(name: string, unique: bigint, buf: Buffer, n: number): void {
    writeOutHeader(buf, OUT_HEADER_SIZE + n, 0, unique);
    this.count(name, false);
    this.write(buf.subarray(0, OUT_HEADER_SIZE + n));
  }

  private replyData(name: string, unique: bigint, data: Uint8Array): void {
    const h = Buffer.allocUnsafe(OUT_HEADER_SIZE);
    writeOutHeader(h, OUT_HEADER_SIZE + data.length, 0, unique);
    this.count(name, false);
    this.writev([h, data]);
  }

  private replyEmpty(name: string, unique: bigint): void {
    this.replyError(name, unique, 0);
  }

  /** ENOSYS that the kernel takes as "not needed, stop asking" (OPEN, OPENDIR, FLUSH, STATX, ...): no failure. */
  private replyNotNeeded(name: string, unique: bigint): void {
    this.replyError(name, unique, Errno.ENOSYS, false);
  }

  private replyError(name: string, unique: bigint, errno: number, failed = errno < 0): void {
    const h = Buffer.allocUnsafe(OUT_HEADER_SIZE);
    writeOutHeader(h, OUT_HEADER_SIZE, errno, unique);
    this.count(name, failed);
    this.write(h);
  }

  private fail(name: string, unique: bigint, e: unknown): void {
    const errno = errnoOf(e);
    this.counters.errors++;
    if (errno === Errno.EIO) {
      this.counters.ioErrors++;
      log.warn(`${name}: ${describeError(e)}`);
    } else if (log.enabled('debug')) {
      log.debug(`${name}: ${describeError(e)}`);
    }
    this.replyError(name, unique, errno);
  }

  private count(name: string, failed: boolean): void {
    const c = (this.byOperation[name] ??= { count: 0, errors: 0 });
    c.count++;
    if (failed) c.errors++;
  }

  /**
   * One message to the kernel. False when it was not taken: ENOENT (the request was interrupted, or a
   * notification's inode is gone) is routine; ENODEV means the mount is gone.
   */
  private write(buf: Buffer, quiet = false): boolean {
    if (this.closed) return false;
    try {
      writeSync(this.fd, buf);
      return true;
    } catch (e) {
      this.writeFailed(e, quiet);
      return false;
    }
  }

  private writev(bufs: Uint8Array[]): boolean {
    if (this.closed) return false;
    try {
      writevSync(this.fd, bufs);
      return true;
    } catch (e) {
      this.writeFailed(e, false);
      return false;
    }
  }

  private writeFailed(e: unknown, quiet: boolean): void {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENODEV' || quiet) return;
    log.warn(`replying to the kernel failed: ${describeError(e)}`);
  }
}

/** Same-size buffers handed out and taken back; at most `keep` are held while unused. */
class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  acquire(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  release(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }
}

function attrOf(stat: Stat): Attr {
  return {
    ino: stat.ino,
    size: stat.size,
    blocks: stat.blocks,
    time: stat.mtime,
    mode: stat.mode || S_IFMT_OF[stat.type],
    nlink: stat.nlink || 1,
    uid: stat.uid,
    gid: stat.gid,
    rdev: stat.rdev,
    blksize: stat.blksize,
  };
}

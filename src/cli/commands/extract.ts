import { execFile } from 'node:child_process';
import { chmodSync, closeSync, ftruncateSync, lchownSync, linkSync, lutimesSync, mkdirSync, openSync, symlinkSync, utimesSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { SquashfsImage } from '../../squashfs/image.js';
import type { Inode, Stat } from '../../squashfs/types.js';
import { quoteForSetfattr } from '../../util/setfattr.js';
import { byteOrder, deviceNumbers, normalisePath, parseCommandArgs, UsageError, withImage, SOURCE_OPTIONS, SOURCE_USAGE, sourceOptions } from './image-arg.js';

const execFileP = promisify(execFile);

export const usage = `usage: squashfs-r2 extract [-q] <image> <dest> [path]

Extracts the image (or the subtree at path, with its parent directories) into <dest>, like
"unsquashfs -d <dest>": regular files (holes kept sparse), directories, symlinks, hard links,
fifos, sockets and devices, with owners, modes (setuid/setgid/sticky), mtimes and xattrs.
<dest> must not exist or be an empty directory; it gets the attributes of the image's root.
Owners, devices and trusted.* xattrs need root.

  -q, --quiet         no summary line on stderr
${SOURCE_USAGE}`;

/** Non-directory entries created concurrently (file system calls wait on the thread pool, not the CPU). */
const PARALLEL_ENTRIES = 16;
/** Bytes read from the image per call when copying a file; all-zero chunks become holes. */
const COPY_CHUNK = 1 << 20;
const ZEROS = Buffer.alloc(COPY_CHUNK);

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { quiet: { type: 'boolean', short: 'q' }, ...SOURCE_OPTIONS }, usage);
  if (positionals.length < 2 || positionals.length > 3) throw new UsageError(`expected <image> <dest> [path]\n\n${usage}`);
  const [spec, destArg, rawPath] = positionals as [string, string, string | undefined];
  const dest = resolve(destArg);
  await prepareDestination(dest);
  const counts = await withImage(spec, sourceOptions(values), async ({ image }) => new Extractor(image, dest).run(normalisePath(rawPath)));
  if (!values.quiet) {
    const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([kind, n]) => `${n} ${kind}`);
    process.stderr.write(`extracted ${parts.join(', ')} to ${dest}\n`);
  }
  return 0;
}

async function prepareDestination(dest: string): Promise<void> {
  const st = await stat(dest).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (st === undefined) {
    await mkdir(dest, { mode: 0o700 });
  } else if (!st.isDirectory()) {
    throw new Error(`${dest} exists and is not a directory`);
  } else if ((await readdir(dest)).length > 0) {
    throw new Error(`${dest} is not empty (extract into a new or empty directory)`);
  }
}

/**
 * A name from a directory listing is used as one path component under dest. The reader already
 * rejects these, but a writer's last line of defence is its own: "", ".", ".." or a "/" or NUL
 * inside a name would put a file outside the tree being written.
 */
function checkName(name: string, dir: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new Error(`refusing to extract the entry ${JSON.stringify(name)} of ${dir}: it would escape the destination`);
  }
}

type Counts = Record<'files' | 'directories' | 'symlinks' | 'hard links' | 'special files', number>;

class Extractor {
  private readonly counts: Counts = { files: 0, directories: 0, symlinks: 0, 'hard links': 0, 'special files': 0 };
  /** Inode number -> first extracted path (once it exists), so later names become hard links. */
  private readonly firstPathOf = new Map<number, Promise<string>>();
  private readonly limiter = new Limiter(PARALLEL_ENTRIES);
  /** Directories in creation order; their attributes are applied last, deepest first. */
  private readonly dirs: { abs: string; stat: Stat }[] = [];
  private readonly seenDirs = new Set<number>();
  /** `setfattr --restore` input, applied in one process once everything exists and is chowned. */
  private readonly xattrDump: string[] = [];

  constructor(
    private readonly image: SquashfsImage,
    private readonly dest: string,
  ) {}

  async run(path: string): Promise<Counts> {
    const root = await this.image.root();
    await this.recordDirectory(root, this.dest);
    let dir = root;
    let abs = this.dest;
    let shown = '';
    const parts = path.split('/').filter(Boolean);
    if (parts.length === 0) {
      await this.extractChildren(root, this.dest, '/');
      await this.limiter.idle();
    }
    for (const [i, part] of parts.entries()) {
      checkName(part, shown || '/');
      const child = await this.image.lookupChild(dir, part);
      shown += `/${part}`;
      if (child === undefined) throw new Error(`${shown}: no such file or directory in the image`);
      abs = join(abs, part);
      if (i === parts.length - 1) {
        await this.extractEntry(child, abs, shown);
        await this.limiter.idle();
      } else {
        if (child.stat.type !== 'directory') throw new Error(`${shown}: not a directory`);
        mkdirSync(abs, { mode: 0o700 });
        await this.recordDirectory(child, abs);
        dir = child;
      }
    }
    await this.restoreXattrs();
    for (const d of [...this.dirs].reverse()) setAttributes(d.abs, d.stat);
    return this.counts;
  }

  private async recordDirectory(inode: Inode, abs: string): Promise<void> {
    if (this.seenDirs.has(inode.ref)) throw new Error(`${abs}: directory cycle in the image`);
    this.seenDirs.add(inode.ref);
    this.dirs.push({ abs, stat: inode.stat });
    this.counts.directories++;
    await this.queueXattrs(inode, abs);
  }

  private async extractChildren(dir: Inode, abs: string, shown: string): Promise<void> {
    const entries = (await this.image.readdir(dir)).sort((a, b) => byteOrder(a.name, b.name));
    for (const entry of entries) {
      checkName(entry.name, shown);
      const inode = await this.image.inode(entry.ref);
      await this.extractEntry(inode, join(abs, entry.name), shown === '/' ? `/${entry.name}` : `${shown}/${entry.name}`);
    }
  }

  private async extractEntry(inode: Inode, abs: string, shown: string): Promise<void> {
    const st = inode.stat;
    if (st.type === 'directory') {
      mkdirSync(abs, { mode: 0o700 });
      await this.recordDirectory(inode, abs);
      await this.extractChildren(inode, abs, shown);
      return;
    }
    const first = st.nlink > 1 ? this.firstPathOf.get(st.ino) : undefined;
    if (first !== undefined) {
      await this.limiter.run(async () => {
        linkSync(await first, abs);
        this.counts['hard links']++;
      });
      return;
    }
    let created!: (path: string) => void;
    if (st.nlink > 1) this.firstPathOf.set(st.ino, new Promise<string>((resolve) => (created = resolve)));
    await this.limiter.run(async () => {
      await this.createLeaf(inode, abs);
      created?.(abs);
    });
  }

  private async createLeaf(inode: Inode, abs: string): Promise<void> {
    const st = inode.stat;
    switch (st.type) {
      case 'file':
        await this.writeFile(inode, abs);
        this.counts.files++;
        break;
      case 'symlink':
        symlinkSync(await this.image.readlink(inode), abs);
        this.counts.symlinks++;
        break;
      default:
        await makeSpecial(abs, st);
        this.counts['special files']++;
    }
    await this.queueXattrs(inode, abs);
    setAttributes(abs, st);
  }

  /**
   * Copies content in chunks; all-zero chunks are skipped and the size set at the end (holes stay
   * holes). File system calls are synchronous: for many small files a thread-pool round trip per
   * call costs more than the call.
   */
  private async writeFile(inode: Inode, abs: string): Promise<void> {
    const fd = openSync(abs, 'wx', 0o600);
    try {
      const size = inode.stat.size;
      for (let offset = 0; offset < size; offset += COPY_CHUNK) {
        const length = Math.min(COPY_CHUNK, size - offset);
        const bytes = await this.image.read(inode, offset, length);
        if (bytes.length !== length) throw new Error(`${abs}: short read from the image at ${offset}`);
        if (Buffer.compare(bytes, ZEROS.subarray(0, length)) === 0) continue;
        let done = 0;
        while (done < length) done += writeSync(fd, bytes, done, length - done, offset + done);
      }
      ftruncateSync(fd, size);
    } finally {
      closeSync(fd);
    }
  }

  private async queueXattrs(inode: Inode, abs: string): Promise<void> {
    const names = await this.image.listXattrs(inode);
    if (names.length === 0) return;
    // Built apart and appended at once: entries are created concurrently.
    const section = [`# file: ${quoteForSetfattr(abs)}`];
    for (const name of names.sort()) {
      const value = Buffer.from(await this.image.getXattr(inode, name));
      section.push(`${quoteForSetfattr(name)}=${value.length === 0 ? '""' : `0x${value.toString('hex')}`}`);
    }
    this.xattrDump.push(...section, '');
  }

  private async restoreXattrs(): Promise<void> {
    if (this.xattrDump.length === 0) return;
    const dir = await mkdtemp(join(tmpdir(), 'squashfs-r2-xattrs-'));
    try {
      const dump = join(dir, 'dump');
      await writeFile(dump, `${this.xattrDump.join('\n')}\n`, { mode: 0o600 });
      await execFileP('setfattr', ['-h', `--restore=${dump}`], { maxBuffer: 16 * 1024 * 1024 }).catch((e: { stderr?: string; message: string }) => {
        throw new Error(`setting xattrs failed: ${(e.stderr || e.message).trim().split('\n').slice(0, 5).join('; ')}`);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/**
 * At most `limit` tasks at once; `run` waits for a free slot (so a walk over millions of entries
 * never queues them all), and the first failure is rethrown by the next `run` or by `idle`.
 */
class Limiter {
  private active = 0;
  private waiters: (() => void)[] = [];
  private failure: unknown;
  private readonly settled = new Set<Promise<void>>();

  constructor(private readonly limit: number) {}

  async run(task: () => Promise<void>): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure !== undefined) throw this.failure;
    this.active++;
    const p = task()
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.active--;
        this.settled.delete(p);
        this.waiters.shift()?.();
      });
    this.settled.add(p);
  }

  async idle(): Promise<void> {
    while (this.settled.size > 0) await Promise.all([...this.settled]);
    if (this.failure !== undefined) throw this.failure;
  }
}

/** Owner first (chown clears setuid/setgid), then mode, then mtime (atime = mtime, as unsquashfs). */
function setAttributes(abs: string, st: Stat): void {
  if (process.getuid?.() === 0) lchownSync(abs, st.uid, st.gid);
  if (st.type === 'symlink') {
    lutimesSync(abs, st.mtime, st.mtime);
    return;
  }
  chmodSync(abs, st.mode & 0o7777);
  utimesSync(abs, st.mtime, st.mtime);
}

/** Fifos, devices and sockets: Node has no mknod, so a child process makes them. */
async function makeSpecial(abs: string, st: Stat): Promise<void> {
  if (st.type === 'socket') {
    // mknod(1) cannot make sockets; mknod(2) can (unsquashfs does the same).
    await execFileP('python3', ['-c', 'import os, stat, sys; os.mknod(sys.argv[1], stat.S_IFSOCK | 0o600)', abs]);
    return;
  }
  const args = st.type === 'fifo' ? [abs, 'p'] : [abs, st.type === 'block-device' ? 'b' : 'c', ...devArgs(st.rdev)];
  await execFileP('mknod', ['-m', '600', ...args]).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`cannot create ${st.type} ${abs}: ${(e.stderr || e.message).trim()}`);
  });
}

function devArgs(rdev: number): string[] {
  const { major, minor } = deviceNumbers(rdev);
  return [String(major), String(minor)];
}

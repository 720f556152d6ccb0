/**
 * The oracle for one hostile image: open it from memory, walk everything (visited set, budgets),
 * read every file, list and read xattrs, readlink, look names up again, resolve inode numbers through
 * the export table, stream a file. Every call must either succeed or fail with a SquashfsError whose
 * code is a format/lookup code. The source is in memory and never fails, so an EIO means the reader
 * wrapped an internal exception (a TypeError, a RangeError...): that is a bug, reported as a violation.
 * Successful reads must have exactly the promised length.
 */
import { SquashfsError, SquashfsImage, type ByteSource } from '../../../src/squashfs/index.js';
import type { Inode } from '../../../src/squashfs/types.js';

export interface Budget {
  maxInodes: number;
  maxReadBytes: number;
  /** Bytes read from each file (in chunks), at most. */
  perFileBytes: number;
  /** Soft deadline for the walk (ms); the hard timeout lives in the supervisor. */
  softMs: number;
}

export const DEFAULT_BUDGET: Budget = { maxInodes: 800, maxReadBytes: 16 << 20, perFileBytes: 1 << 20, softMs: 3000 };

export interface ExerciseResult {
  opened: boolean;
  /** Code of the open failure, when it failed. */
  openError?: string;
  inodes: number;
  bytesRead: number;
  /** SquashfsError codes seen during the walk, with counts. */
  errors: Record<string, number>;
  /** Oracle violations: the bugs. Empty for a good reader. */
  violations: string[];
  /** The walk stopped at a budget (not a failure). */
  budgetHit: boolean;
}

/** Codes a hostile image may legitimately produce (EIO cannot: the memory source never fails). */
const ALLOWED = new Set([
  'ECORRUPT',
  'EUNSUPPORTED',
  'ENOENT',
  'ENOTDIR',
  'EISDIR',
  'EINVAL',
  'ENODATA',
  'ENAMETOOLONG',
  'ELOOP',
]);

export function memorySource(bytes: Uint8Array, name = 'fuzz-image'): ByteSource {
  return {
    name,
    size: bytes.length,
    async read(offset, length) {
      if (
        !Number.isSafeInteger(offset) ||
        !Number.isSafeInteger(length) ||
        offset < 0 ||
        length < 0 ||
        offset + length > bytes.length
      ) {
        throw new RangeError(`memory source: read [${offset}, +${length}) outside ${bytes.length} bytes`);
      }
      return bytes.slice(offset, offset + length);
    },
  };
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const stack = (e.stack ?? '')
      .split('\n')
      .slice(1, 4)
      .map((l) => l.trim())
      .join(' | ');
    return `${e.constructor.name}: ${e.message}${stack ? ` [${stack}]` : ''}`;
  }
  return `non-Error thrown: ${String(e)}`;
}

export async function exerciseImage(bytes: Uint8Array, budget: Budget = DEFAULT_BUDGET): Promise<ExerciseResult> {
  const result: ExerciseResult = {
    opened: false,
    inodes: 0,
    bytesRead: 0,
    errors: {},
    violations: [],
    budgetHit: false,
  };
  const deadline = Date.now() + budget.softMs;
  const note = (what: string, e: unknown): void => {
    if (!(e instanceof SquashfsError)) {
      result.violations.push(`${what}: not a SquashfsError: ${describe(e)}`);
      return;
    }
    if (!ALLOWED.has(e.code)) {
      result.violations.push(
        `${what}: ${e.code} from a source that never fails (an internal exception wrapped?): ${e.message}; cause: ${describe(e.cause)}`,
      );
      return;
    }
    result.errors[e.code] = (result.errors[e.code] ?? 0) + 1;
  };
  const attempt = async <T>(what: string, fn: () => Promise<T> | T): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      note(what, e);
      return undefined;
    }
  };
  /** A probe that should fail with `code` (on a damaged image, succeeding is fine too). */
  const expectFailure = async (what: string, code: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof SquashfsError) || e.code !== code) note(what, e);
    }
  };
  const overBudget = (): boolean => {
    if (result.inodes >= budget.maxInodes || result.bytesRead >= budget.maxReadBytes || Date.now() > deadline) {
      result.budgetHit = true;
      return true;
    }
    return false;
  };

  let image: SquashfsImage;
  try {
    image = await SquashfsImage.open(memorySource(bytes), { cacheBytes: 8 << 20 });
  } catch (e) {
    note('open', e);
    result.openError = e instanceof SquashfsError ? e.code : 'non-SquashfsError';
    return result;
  }
  result.opened = true;

  const checkedRead = async (
    what: string,
    inode: Inode,
    offset: number,
    length: number,
  ): Promise<Uint8Array | undefined> => {
    const data = await attempt(what, () => image.read(inode, offset, length));
    if (data === undefined) return undefined;
    const expected = Math.max(0, Math.min(length, inode.stat.size - offset));
    if (!(data instanceof Uint8Array) || data.length !== expected) {
      result.violations.push(
        `${what}: read(${offset}, ${length}) of a ${inode.stat.size}-byte file returned ${data?.length} bytes, expected ${expected}`,
      );
    }
    result.bytesRead += data.length;
    return data;
  };

  const readFile = async (path: string, inode: Inode): Promise<void> => {
    const size = inode.stat.size;
    const chunk = 256 << 10;
    for (let off = 0; off < Math.min(size, budget.perFileBytes); off += chunk) {
      if (overBudget()) return;
      if ((await checkedRead(`read ${path}@${off}`, inode, off, chunk)) === undefined) break;
    }
    if (size > 0) await checkedRead(`read ${path} last byte`, inode, size - 1, 1);
    if (size > budget.perFileBytes) await checkedRead(`read ${path} middle`, inode, Math.floor(size / 2), 4096);
    await checkedRead(`read ${path} past the end`, inode, size + 10, 10);
  };

  const seen = new Set<number>();
  const visit = async (path: string, inode: Inode): Promise<void> => {
    if (seen.has(inode.ref) || overBudget()) return;
    seen.add(inode.ref);
    result.inodes++;
    const st = inode.stat;
    if (!Number.isSafeInteger(st.size) || st.size < 0) result.violations.push(`${path}: stat size ${st.size}`);
    await attempt(`stat ${path}`, () => image.stat(inode));
    const names = await attempt(`listxattr ${path}`, () => image.listXattrs(inode));
    for (const name of names ?? []) await attempt(`getxattr ${path} ${name}`, () => image.getXattr(inode, name));
    await expectFailure(`getxattr ${path} (absent)`, 'ENODATA', () => image.getXattr(inode, 'user.absent-for-sure'));
    if (image.info.exportTable) {
      await attempt(`inode by number ${st.ino}`, () => image.inodeByNumber(st.ino));
    }
    switch (st.type) {
      case 'file':
        await readFile(path, inode);
        break;
      case 'symlink':
        await attempt(`readlink ${path}`, () => image.readlink(inode));
        break;
      case 'directory': {
        const entries = await attempt(`readdir ${path}`, () => image.readdir(inode));
        for (const e of entries ?? []) {
          if (overBudget()) return;
          if (e.name.length === 0 || e.name === '.' || e.name === '..' || e.name.includes('/')) {
            result.violations.push(`readdir ${path}: bad name ${JSON.stringify(e.name)}`);
            continue;
          }
          const child = await attempt(`lookup ${path}/${e.name}`, () => image.lookupChild(inode, e.name));
          const byRef = await attempt(`inode ${path}/${e.name}`, () => image.inode(e.ref));
          const next = byRef ?? child;
          if (next) await visit(`${path}/${e.name}`, next);
        }
        break;
      }
      default:
        break;
    }
  };

  const root = await attempt('root', () => image.root());
  if (root) {
    await visit('', root);
    await expectFailure('lookup of a missing path', 'ENOENT', () => image.lookup('/no/such/path'));
  }
  await attempt('statfs', () => image.statfs());
  // One stream over the first file found, start to end (the stream path has its own error handling).
  const firstFile = [...seen].length > 0 && root ? await findFile(image, root) : undefined;
  if (firstFile && !overBudget()) {
    await attempt('stream', () =>
      drain(image.createReadStream(firstFile, { end: Math.min(firstFile.stat.size, 1 << 20) - 1 })),
    );
  }
  await attempt('close', () => image.close());
  return result;
}

async function findFile(image: SquashfsImage, root: Inode): Promise<Inode | undefined> {
  try {
    for (const e of await image.readdir(root)) if (e.type === 'file') return await image.inode(e.ref);
  } catch {
    // already reported by the walk
  }
  return undefined;
}

function drain(stream: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    stream.on('data', (c: Uint8Array) => (n += c.length));
    stream.on('end', () => resolve(n));
    stream.on('error', reject);
  });
}

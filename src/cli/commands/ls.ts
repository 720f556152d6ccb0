import type { SquashfsImage } from '../../squashfs/image.js';
import type { Inode } from '../../squashfs/types.js';
import { byteOrder, childPath, exitQuietlyOnEpipe, modeString, normalisePath, parseCommandArgs, sizeColumn, timeString, UsageError, withImage, SOURCE_OPTIONS, SOURCE_USAGE, sourceOptions } from './image-arg.js';

export const usage = `usage: squashfs-r2 ls [-l] [-R] <image> [path]

Lists a directory of an image (or names a single file), without mounting it.

  -l, --long        long format like "ls -ln": mode, links, uid, gid, size (or "major, minor"),
                    mtime (UTC, "YYYY-MM-DD HH:MM"), name, "-> target" for symlinks
  -R, --recursive   list subdirectories too ("ls -R" layout: "<dir>:" headers)
${SOURCE_USAGE}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    { long: { type: 'boolean', short: 'l' }, recursive: { type: 'boolean', short: 'R' }, ...SOURCE_OPTIONS },
    usage,
  );
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError(`expected <image> [path]\n\n${usage}`);
  const [spec, rawPath] = positionals as [string, string | undefined];
  const path = normalisePath(rawPath);
  exitQuietlyOnEpipe();
  await withImage(spec, sourceOptions(values), async ({ image }) => {
    const target = await image.lookup(path);
    const out = new LineWriter();
    if (target.stat.type !== 'directory') {
      out.line(await formatEntry(image, target, path, Boolean(values.long)));
    } else if (values.recursive) {
      await listRecursive(image, target, path, Boolean(values.long), out);
    } else {
      await listDirectory(image, target, Boolean(values.long), out);
    }
    await out.flush();
  });
  return 0;
}

async function formatEntry(image: SquashfsImage, inode: Inode, name: string, long: boolean): Promise<string> {
  if (!long) return name;
  const st = inode.stat;
  const link = st.type === 'symlink' ? ` -> ${await image.readlink(inode)}` : '';
  return `${modeString(st.type, st.mode & 0o7777)} ${st.nlink} ${st.uid} ${st.gid} ${sizeColumn(st)} ${timeString(st.mtime)} ${name}${link}`;
}

async function listDirectory(image: SquashfsImage, dir: Inode, long: boolean, out: LineWriter): Promise<Inode[]> {
  const entries = (await image.readdir(dir)).sort((a, b) => byteOrder(a.name, b.name));
  const subdirs: Inode[] = [];
  for (const entry of entries) {
    const inode = long || entry.type === 'directory' ? await image.inode(entry.ref) : undefined;
    out.line(inode ? await formatEntry(image, inode, entry.name, long) : entry.name);
    if (entry.type === 'directory') subdirs.push(inode!);
  }
  return subdirs;
}

/** Depth-first like `ls -R`; a directory seen twice (a cycle in a hostile image) is reported, not followed. */
async function listRecursive(image: SquashfsImage, root: Inode, rootPath: string, long: boolean, out: LineWriter): Promise<void> {
  const seen = new Set<number>();
  const visit = async (dir: Inode, path: string, first: boolean): Promise<void> => {
    if (seen.has(dir.ref)) throw new Error(`${path}: directory cycle in the image (already listed)`);
    seen.add(dir.ref);
    out.line(`${first ? '' : '\n'}${path}:`);
    const entries = (await image.readdir(dir)).sort((a, b) => byteOrder(a.name, b.name));
    const subdirs: [Inode, string][] = [];
    for (const entry of entries) {
      const inode = await image.inode(entry.ref);
      out.line(await formatEntry(image, inode, entry.name, long));
      if (inode.stat.type === 'directory') subdirs.push([inode, childPath(path, entry.name)]);
    }
    await out.drain();
    for (const [inode, p] of subdirs) await visit(inode, p, false);
  };
  await visit(root, rootPath, true);
}

/** Buffered stdout lines with backpressure (a 3000-entry listing piped into `head` must not balloon). */
class LineWriter {
  private pending: string[] = [];
  private size = 0;

  line(text: string): void {
    this.pending.push(text);
    this.size += text.length + 1;
  }

  async drain(): Promise<void> {
    if (this.size > 64 * 1024) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const chunk = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.size = 0;
    if (!process.stdout.write(chunk)) await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
  }
}

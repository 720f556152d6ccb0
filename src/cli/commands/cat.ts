import { SquashfsError } from '../../squashfs/errors.js';
import { normalisePath, parseCommandArgs, UsageError, withImage, SOURCE_OPTIONS, SOURCE_USAGE, sourceOptions } from './image-arg.js';

export const usage = `usage: squashfs-r2 cat <image> <path>...

Writes the content of files in the image to stdout, in order. Symlinks are not followed.
${SOURCE_USAGE}`;

/** Bytes asked of the reader per call: a few blocks, so stdout backpressure bounds memory. */
const CHUNK = 1 << 20;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { ...SOURCE_OPTIONS }, usage);
  if (positionals.length < 2) throw new UsageError(`expected <image> <path>...\n\n${usage}`);
  const [spec, ...paths] = positionals as [string, ...string[]];
  let stdoutGone = false;
  const onError = (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') stdoutGone = true;
  };
  process.stdout.on('error', onError);
  try {
    await withImage(spec, sourceOptions(values), async ({ image }) => {
      for (const raw of paths) {
        const path = normalisePath(raw);
        const inode = await image.lookup(path);
        const type = inode.stat.type;
        if (type === 'directory') throw new SquashfsError('EISDIR', `${path}: is a directory`, { path });
        if (type !== 'file') throw new SquashfsError('EINVAL', `${path}: is a ${type}, not a regular file`, { path });
        for (let offset = 0; offset < inode.stat.size && !stdoutGone; offset += CHUNK) {
          const bytes = await image.read(inode, offset, Math.min(CHUNK, inode.stat.size - offset));
          if (!(await write(bytes, () => stdoutGone))) stdoutGone = true;
        }
        if (stdoutGone) return; // the reader went away (`| head`): not an error
      }
    });
  } finally {
    process.stdout.off('error', onError);
  }
  return 0;
}

/** Writes one chunk and waits until it is handed to the OS; false when stdout was closed. */
function write(bytes: Uint8Array, gone: () => boolean): Promise<boolean> {
  return new Promise((resolve) => {
    if (gone()) return resolve(false);
    process.stdout.write(bytes, (err) => resolve(!err && !gone()));
  });
}

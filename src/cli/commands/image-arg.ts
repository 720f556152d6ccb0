/**
 * What the inspection commands (ls, stat, cat, extract) share: opening the <image> argument,
 * argument errors, and ls-style formatting. Not a command itself (main.ts only dispatches names
 * it lists).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { openSource, type OpenedSource, type SourceOptions } from '../../r2/open-source.js';
import { SquashfsImage } from '../../squashfs/image.js';
import type { FileType, Stat } from '../../squashfs/types.js';
import { UsageError } from '../usage-error.js';

export { UsageError };

export interface ParsedCommandArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function parseCommandArgs(argv: string[], options: ParseArgsConfig['options'], usage: string): ParsedCommandArgs {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as ParsedCommandArgs['values'], positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}

export interface OpenedImage {
  image: SquashfsImage;
  source: OpenedSource;
  close(): Promise<void>;
}

/** Flags naming where a remote image lives (the same ones `mount` takes). */
export const SOURCE_OPTIONS = {
  endpoint: { type: 'string' },
  'account-id': { type: 'string' },
  'path-style': { type: 'boolean' },
  region: { type: 'string' },
  stats: { type: 'boolean' },
} as const;

export const SOURCE_USAGE = `
<image> is a local path, s3://bucket/key, r2://bucket/key or an http(s):// URL.
  --endpoint URL      S3/R2 endpoint
  --account-id ID     R2 account id (else R2_ACCOUNT_ID)
  --path-style        path-style S3 URLs
  --region REGION     signing region
  --stats             print request, byte, cache and latency statistics to stderr at the end
Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
`;

/** Source options plus whether to print statistics when the command is done (`--stats`). */
export type CommandSourceOptions = SourceOptions & { printStats?: boolean };

export function sourceOptions(values: ParsedCommandArgs['values']): CommandSourceOptions {
  return {
    printStats: values.stats as boolean | undefined,
    endpoint: values.endpoint as string | undefined,
    accountId: values['account-id'] as string | undefined,
    pathStyle: values['path-style'] as boolean | undefined,
    region: values.region as string | undefined,
  };
}

/** Opens an image named by a local path, s3://, r2:// or http(s):// spec (see src/r2/spec.ts). */
export async function openImage(spec: string, options: SourceOptions = {}): Promise<OpenedImage> {
  const source = await openSource(spec, options);
  try {
    const image = await SquashfsImage.open(source);
    return {
      image,
      source,
      // The image closes its source too.
      close: () => image.close(),
    };
  } catch (e) {
    await source.close();
    throw e;
  }
}

/** Runs `fn` with the image open and always closes it. */
export async function withImage<T>(
  spec: string,
  options: CommandSourceOptions,
  fn: (opened: OpenedImage) => Promise<T>,
): Promise<T> {
  const { printStats, ...open } = options;
  const opened = await openImage(spec, open);
  try {
    return await fn(opened);
  } finally {
    if (printStats) {
      const stats = { source: opened.source.stats(), reader: opened.image.cacheStats() };
      process.stderr.write(`stats: ${JSON.stringify(stats)}\n`);
    }
    await opened.close();
  }
}

const TYPE_LETTER: Record<FileType, string> = {
  directory: 'd',
  file: '-',
  symlink: 'l',
  'block-device': 'b',
  'char-device': 'c',
  fifo: 'p',
  socket: 's',
};

/** `ls -l` permission string: "drwxr-sr-t" style, setuid/setgid/sticky included. */
export function modeString(type: FileType, mode: number): string {
  const rwx = (bits: number, special: boolean, specialChar: string) =>
    (bits & 4 ? 'r' : '-') +
    (bits & 2 ? 'w' : '-') +
    (special ? (bits & 1 ? specialChar : specialChar.toUpperCase()) : bits & 1 ? 'x' : '-');
  return (
    TYPE_LETTER[type] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') +
    rwx(mode & 7, (mode & 0o1000) !== 0, 't')
  );
}

/** Major and minor of a device number in the kernel's 32-bit "new" encoding (what squashfs stores). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  return { major: (rdev >>> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

/** UTC "YYYY-MM-DD HH:MM" (ls --time-style=long-iso, but always UTC so output is reproducible). */
export function timeString(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

/** Size column: bytes, or "major, minor" for devices (as ls prints them). */
export function sizeColumn(st: Stat): string {
  if (st.type === 'block-device' || st.type === 'char-device') {
    const { major, minor } = deviceNumbers(st.rdev);
    return `${major}, ${minor}`;
  }
  return String(st.size);
}

/** Bytewise name order (what `LC_ALL=C ls` and unsquashfs use), not locale order. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Joins an image path and a child name without doubling the slash at the root. */
export function childPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** "/a/b" for any of "a/b", "/a/b/", "" ... (lookups accept these too; this is for display). */
export function normalisePath(path: string | undefined): string {
  const parts = (path ?? '').split('/').filter((p) => p !== '' && p !== '.');
  return `/${parts.join('/')}`;
}

/**
 * `squashfs-r2 ls ... | head`: when the reader of stdout goes away, stop quietly with status 0
 * instead of crashing on EPIPE (what cat and ls do, short of dying by SIGPIPE).
 */
export function exitQuietlyOnEpipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

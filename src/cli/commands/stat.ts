import { describeOptions, loadDecompressor } from '../../squashfs/compression/index.js';
import type { SquashfsImage } from '../../squashfs/image.js';
import type { ByteSource } from '../../squashfs/source.js';
import {
  FLAG_COMPRESSOR_OPTIONS,
  METADATA_BLOCK_SIZE,
  SUPERBLOCK_SIZE,
  type Superblock,
} from '../../squashfs/superblock.js';
import {
  deviceNumbers,
  modeString,
  normalisePath,
  parseCommandArgs,
  UsageError,
  withImage,
  SOURCE_OPTIONS,
  SOURCE_USAGE,
  sourceOptions,
} from './image-arg.js';

export const usage = `usage: squashfs-r2 stat [--json] <image> [path]

With a path: the inode of that path (type, inode number, mode, links, owner, size, blocks, mtime,
device numbers, symlink target, xattrs). Without: a summary of the superblock, including the
compressor and its options. Symlinks are not followed.

  --json              machine-readable output
${SOURCE_USAGE}`;

/** Superblock flag bits (informational; format §2). */
const FLAG_NAMES: [number, string][] = [
  [0x0001, 'inodes-uncompressed'],
  [0x0002, 'data-uncompressed'],
  [0x0008, 'fragments-uncompressed'],
  [0x0010, 'no-fragments'],
  [0x0020, 'always-fragments'],
  [0x0040, 'duplicates-removed'],
  [0x0080, 'exportable'],
  [0x0100, 'xattrs-uncompressed'],
  [0x0200, 'no-xattrs'],
  [0x0400, 'compressor-options'],
  [0x0800, 'ids-uncompressed'],
];

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { json: { type: 'boolean' }, ...SOURCE_OPTIONS }, usage);
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError(`expected <image> [path]\n\n${usage}`);
  const [spec, rawPath] = positionals as [string, string | undefined];
  await withImage(spec, sourceOptions(values), async ({ image, source }) => {
    const report =
      rawPath === undefined ? await superblockReport(image, source) : await inodeReport(image, normalisePath(rawPath));
    process.stdout.write(values.json ? `${JSON.stringify(report.json, null, 2)}\n` : report.text);
  });
  return 0;
}

interface Report {
  text: string;
  json: Record<string, unknown>;
}

function lines(pairs: [string, string | number | undefined][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}\n`)
    .join('');
}

function isoTime(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().replace('.000Z', 'Z')} (${seconds})`;
}

/** Printable UTF-8 shown quoted, anything else as hex (like getfattr's choice of encoding). */
/** Bytes below 0x20 other than tab and newline, or DEL: such a value is shown as hex. */
function hasControlCharacters(value: Uint8Array): boolean {
  return value.some((b) => (b < 0x20 && b !== 0x09 && b !== 0x0a) || b === 0x7f);
}

function xattrValue(value: Uint8Array): string {
  const text = Buffer.from(value).toString('utf8');
  const printable = Buffer.from(text, 'utf8').equals(Buffer.from(value)) && !hasControlCharacters(value);
  return printable ? JSON.stringify(text) : `0x${Buffer.from(value).toString('hex')}`;
}

async function inodeReport(image: SquashfsImage, path: string): Promise<Report> {
  const inode = await image.lookup(path);
  const st = inode.stat;
  const target = st.type === 'symlink' ? await image.readlink(inode) : undefined;
  const device = st.type === 'block-device' || st.type === 'char-device' ? deviceNumbers(st.rdev) : undefined;
  const xattrs: [string, Uint8Array][] = [];
  for (const name of (await image.listXattrs(inode)).sort()) xattrs.push([name, await image.getXattr(inode, name)]);
  const perm = st.mode & 0o7777;
  const text =
    lines([
      ['path', path],
      ['type', st.type],
      ['inode', st.ino],
      ['mode', `${perm.toString(8).padStart(4, '0')} (${modeString(st.type, perm)})`],
      ['links', st.nlink],
      ['uid', st.uid],
      ['gid', st.gid],
      ['size', st.size],
      ['blocks', `${st.blocks} (512-byte units)`],
      ['block size', st.blksize],
      ['mtime', isoTime(st.mtime)],
      ['device', device && `${device.major}, ${device.minor}`],
      ['target', target],
      ['xattrs', xattrs.length === 0 ? 'none' : String(xattrs.length)],
    ]) + xattrs.map(([name, value]) => `  ${name}=${xattrValue(value)}\n`).join('');
  const json = {
    path,
    ...st,
    mode: perm,
    ...(device ?? {}),
    ...(target === undefined ? {} : { target }),
    xattrs: Object.fromEntries(xattrs.map(([n, v]) => [n, Buffer.from(v).toString('hex')])),
  };
  return { text, json };
}

/** The compression-options payload as stored (it is uncompressed in practice; decoded if not). */
async function compressorOptions(source: ByteSource, sb: Superblock): Promise<Uint8Array | undefined> {
  if (!(sb.flags & FLAG_COMPRESSOR_OPTIONS)) return undefined;
  const header = Buffer.from(await source.read(SUPERBLOCK_SIZE, 2)).readUInt16LE(0);
  const payload = await source.read(SUPERBLOCK_SIZE + 2, header & 0x7fff);
  if (header & 0x8000) return payload;
  return (await loadDecompressor(sb.compressorId)).decompress(payload, METADATA_BLOCK_SIZE);
}

async function superblockReport(image: SquashfsImage, source: ByteSource): Promise<Report> {
  const sb = image.superblock;
  const info = image.info;
  const compressor = describeOptions(sb.compressorId, await compressorOptions(source, sb));
  const flagNames = FLAG_NAMES.filter(([bit]) => sb.flags & bit).map(([, name]) => name);
  const tables: [string, number | undefined][] = [
    ['inode table', sb.inodeTableStart],
    ['directory table', sb.directoryTableStart],
    ['fragment table', info.fragmentCount > 0 ? sb.fragmentTableStart : undefined],
    ['export table', sb.exportTableStart],
    ['id table', sb.idTableStart],
    ['xattr id table', sb.xattrIdTableStart],
  ];
  const text = lines([
    ['image', `${source.name} (${source.size} bytes)`],
    ['format', 'squashfs 4.0'],
    ['compressor', compressor],
    ['block size', sb.blockSize],
    ['bytes used', sb.bytesUsed],
    ['inodes', sb.inodeCount],
    ['fragments', sb.fragmentCount],
    ['ids', sb.idCount],
    ['created', isoTime(sb.modTime)],
    ['flags', `0x${sb.flags.toString(16).padStart(4, '0')} (${flagNames.join(', ') || 'none'})`],
    ['export table', info.exportTable ? 'yes' : 'no'],
    ['xattrs', info.xattrs ? 'yes' : 'no'],
    ...tables.map(([name, at]): [string, string | undefined] => [name, at === undefined ? undefined : `at ${at}`]),
  ]);
  const json = {
    image: source.name,
    imageSize: source.size,
    ...info,
    compressorOptions: compressor,
    flagNames,
    tables: Object.fromEntries(tables.filter(([, at]) => at !== undefined)),
  };
  return { text, json };
}

/**
 * Mutations of a valid image, aimed with its layout: superblock fields, every table's bytes and
 * fields, metadata block headers, lookup index lists, swapped metadata blocks, truncations, random
 * bytes. Each returns a new buffer and one line saying exactly what was done (for the regression
 * record). Deterministic: the same PRNG state gives the same image.
 */
import type { Prng } from './prng.js';
import { type Area, type FieldWidth, type ImageLayout, SUPERBLOCK_FIELDS } from './image-layout.js';

export const STRATEGIES = [
  'superblock-field',
  'superblock-bits',
  'table-bits',
  'table-field',
  'metadata-header',
  'index-entry',
  'swap-blocks',
  'truncate',
  'random-bytes',
  'fill',
  'multi',
] as const;
export type Strategy = (typeof STRATEGIES)[number];

const WEIGHTS: readonly (readonly [Strategy, number])[] = [
  ['superblock-field', 12],
  ['superblock-bits', 4],
  ['table-bits', 16],
  ['table-field', 20],
  ['metadata-header', 8],
  ['index-entry', 8],
  ['swap-blocks', 6],
  ['truncate', 6],
  ['random-bytes', 6],
  ['fill', 4],
  ['multi', 10],
];

export interface Mutation {
  strategy: Strategy;
  bytes: Buffer;
  /** Human-readable list of the edits. */
  edits: string[];
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** Absurd and boundary values for a field of `width` bytes, around its original value. */
function interestingValue(rng: Prng, width: FieldWidth, original: bigint, layout: ImageLayout): bigint {
  const max = width === 2 ? 0xffffn : width === 4 ? 0xffff_ffffn : U64_MAX;
  const common = [0n, 1n, 2n, max, max - 1n, original + 1n, original - 1n, original * 2n, original ^ 0x80n];
  const wide =
    width === 2
      ? [0x7fffn, 0x8000n, 0x2000n, 0x2001n, 0x100n]
      : width === 4
        ? [0x7fff_ffffn, 0x8000_0000n, 0xffff_fffen, 0x1_0000n, 0x2000n, BigInt(layout.size), BigInt(layout.bytesUsed)]
        : [
            0x8000_0000n,
            0xffff_ffffn,
            0x1_0000_0000n,
            1n << 53n,
            (1n << 53n) + 1n,
            1n << 63n,
            BigInt(layout.size),
            BigInt(layout.bytesUsed),
            BigInt(layout.bytesUsed - 1),
          ];
  const choice = rng.int(10);
  if (choice < 6) return BigInt.asUintN(width * 8, rng.pick([...common, ...wide]));
  if (choice < 8) return BigInt(rng.int(Math.min(Number(max), layout.size * 2) + 1));
  return BigInt.asUintN(width * 8, BigInt(rng.next32()) * (width === 8 ? BigInt(rng.next32()) : 1n));
}

function readField(b: Buffer, offset: number, width: FieldWidth): bigint {
  return width === 2
    ? BigInt(b.readUInt16LE(offset))
    : width === 4
      ? BigInt(b.readUInt32LE(offset))
      : b.readBigUInt64LE(offset);
}

function writeField(b: Buffer, offset: number, width: FieldWidth, v: bigint): void {
  if (width === 2) b.writeUInt16LE(Number(v & 0xffffn), offset);
  else if (width === 4) b.writeUInt32LE(Number(v & 0xffff_ffffn), offset);
  else b.writeBigUInt64LE(BigInt.asUintN(64, v), offset);
}

/** Metadata and tables get most of the damage; file data a little. */
function pickArea(rng: Prng, layout: ImageLayout): Area {
  const weight = (a: Area): number =>
    a.name === 'data' ? 2 : a.name === 'superblock' ? 2 : a.name.endsWith('index') ? 4 : 8;
  return rng.weighted(layout.areas.map((a) => [a, weight(a)] as const));
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

type Edit = (rng: Prng, b: Buffer, layout: ImageLayout) => string;

const superblockField: Edit = (rng, b, layout) => {
  const f = rng.pick(SUPERBLOCK_FIELDS);
  const before = readField(b, f.offset, f.width);
  const v = interestingValue(rng, f.width, before, layout);
  writeField(b, f.offset, f.width, v);
  return `superblock ${f.name} ${hex(before)} -> ${hex(readField(b, f.offset, f.width))}`;
};

function flipBits(rng: Prng, b: Buffer, area: Area, n: number): string {
  const flips: string[] = [];
  for (let i = 0; i < n; i++) {
    const at = area.start + rng.int(Math.min(area.end, b.length) - area.start);
    const bit = rng.int(8);
    b[at] = b[at]! ^ (1 << bit);
    flips.push(`${at}.${bit}`);
  }
  return `${area.name}: flipped bits ${flips.join(' ')}`;
}

const superblockBits: Edit = (rng, b, layout) => flipBits(rng, b, layout.areas[0]!, rng.range(1, 3));

const tableBits: Edit = (rng, b, layout) => flipBits(rng, b, pickArea(rng, layout), rng.range(1, 4));

/** An aligned u16/u32/u64 inside a table set to an absurd value (lands on real fields in uncompressed metadata). */
const tableField: Edit = (rng, b, layout) => {
  const area = pickArea(rng, layout);
  const width = rng.pick([2, 4, 4, 8] as const);
  const span = Math.min(area.end, b.length) - area.start - width;
  if (span < 0) return `${area.name}: too small for a ${width}-byte field`;
  const at = area.start + rng.int(span + 1);
  const before = readField(b, at, width);
  const v = interestingValue(rng, width, before, layout);
  writeField(b, at, width, v);
  return `${area.name}: u${width * 8} at ${at} ${hex(before)} -> ${hex(readField(b, at, width))}`;
};

const metadataHeader: Edit = (rng, b, layout) => {
  if (layout.metadataBlocks.length === 0) return 'no metadata blocks';
  const blk = rng.pick(layout.metadataBlocks);
  const before = b.readUInt16LE(blk.pos);
  const choices = [
    0,
    1,
    2,
    0x1fff,
    0x2000,
    0x2001,
    0x7fff,
    0x8000,
    0x8001,
    0xa000,
    0xffff,
    before ^ 0x8000,
    before + 1,
    before - 1,
    (before & 0x8000) | rng.int(0x8000),
  ];
  const v = rng.pick(choices) & 0xffff;
  b.writeUInt16LE(v, blk.pos);
  return `${blk.table} block header at ${blk.pos} 0x${before.toString(16)} -> 0x${v.toString(16)}`;
};

const indexEntry: Edit = (rng, b, layout) => {
  const lists = layout.indexLists.filter((l) => l.entries > 0);
  if (lists.length === 0) return 'no index lists';
  const list = rng.pick(lists);
  const at = list.start + 8 * rng.int(list.entries);
  const before = b.readBigUInt64LE(at);
  const other = layout.metadataBlocks.length > 0 ? BigInt(rng.pick(layout.metadataBlocks).pos) : 0n;
  const v = rng.pick([
    0n,
    1n,
    U64_MAX,
    before + 1n,
    before - 1n,
    before + 2n,
    before + 8194n,
    before - 8194n,
    other,
    BigInt(layout.bytesUsed),
    1n << 53n,
    BigInt(rng.int(layout.size)),
  ]);
  b.writeBigUInt64LE(BigInt.asUintN(64, v), at);
  return `${list.table} index entry at ${at} ${hex(before)} -> ${hex(BigInt.asUintN(64, v))}`;
};

/** Two metadata blocks of one chained table trade places (the table keeps its length; references now land elsewhere). */
const swapBlocks: Edit = (rng, b, layout) => {
  const tables = [...new Set(layout.metadataBlocks.map((m) => m.table))].filter(
    (t) => layout.metadataBlocks.filter((m) => m.table === t).length >= 2,
  );
  if (tables.length === 0) return 'no table with two blocks';
  const table = rng.pick(tables);
  const blocks = layout.metadataBlocks.filter((m) => m.table === table).sort((x, y) => x.pos - y.pos);
  const i = rng.int(blocks.length - 1);
  // Half the time neighbours (the common case of a misplaced block), else any later block.
  const j = rng.chance(0.5) ? i + 1 : i + 1 + rng.int(blocks.length - 1 - i);
  const first = blocks[i]!;
  const second = blocks[j]!;
  const a = Buffer.from(b.subarray(first.pos, first.pos + 2 + first.length));
  const between = Buffer.from(b.subarray(first.pos + 2 + first.length, second.pos));
  const c = Buffer.from(b.subarray(second.pos, second.pos + 2 + second.length));
  Buffer.concat([c, between, a]).copy(b, first.pos);
  return `${table}: swapped blocks at ${first.pos} (${first.length} bytes) and ${second.pos} (${second.length} bytes)`;
};

const randomBytes: Edit = (rng, b) => {
  const n = rng.range(1, 16);
  const at: number[] = [];
  for (let k = 0; k < n; k++) {
    const p = rng.int(b.length);
    b[p] = rng.int(256);
    at.push(p);
  }
  return `random bytes at ${at.join(' ')}`;
};

const fill: Edit = (rng, b, layout) => {
  const area = pickArea(rng, layout);
  const len = Math.min(rng.range(4, 512), area.end - area.start);
  const at = area.start + rng.int(area.end - area.start - len + 1);
  const value = rng.pick([0x00, 0xff, 0x55, rng.int(256)]);
  b.fill(value, at, at + len);
  return `${area.name}: filled [${at}, +${len}) with 0x${value.toString(16)}`;
};

const EDITS: Record<Exclude<Strategy, 'truncate' | 'multi'>, Edit> = {
  'superblock-field': superblockField,
  'superblock-bits': superblockBits,
  'table-bits': tableBits,
  'table-field': tableField,
  'metadata-header': metadataHeader,
  'index-entry': indexEntry,
  'swap-blocks': swapBlocks,
  'random-bytes': randomBytes,
  fill,
};

/** A cut inside a table or at a block boundary; half the time bytes_used is moved to the cut so the image still opens. */
function truncate(rng: Prng, pristine: Buffer, layout: ImageLayout): Mutation {
  let cut: number;
  const r = rng.int(4);
  if (r === 0 && layout.metadataBlocks.length > 0) {
    const blk = rng.pick(layout.metadataBlocks);
    cut = blk.pos + rng.pick([0, 1, 2, 2 + blk.length - 1, 2 + blk.length]);
  } else if (r === 1) {
    const area = pickArea(rng, layout);
    cut = area.start + rng.int(area.end - area.start + 1);
  } else if (r === 2) {
    cut = layout.bytesUsed - rng.int(64);
  } else {
    cut = rng.int(layout.size);
  }
  cut = Math.max(0, Math.min(cut, layout.size));
  const bytes = Buffer.from(pristine.subarray(0, cut));
  const edits = [`truncated to ${cut} of ${layout.size} bytes`];
  if (cut >= 96 && rng.chance(0.5)) {
    bytes.writeBigUInt64LE(BigInt(cut), 40);
    edits.push(`bytes_used set to ${cut}`);
  }
  return { strategy: 'truncate', bytes, edits };
}

/** One mutated image of `pristine`. */
export function mutate(rng: Prng, pristine: Buffer, layout: ImageLayout): Mutation {
  const strategy = rng.weighted(WEIGHTS);
  if (strategy === 'truncate') return truncate(rng, pristine, layout);
  const bytes = Buffer.from(pristine);
  if (strategy === 'multi') {
    const n = rng.range(2, 4);
    const edits: string[] = [];
    const kinds = Object.keys(EDITS) as (keyof typeof EDITS)[];
    for (let i = 0; i < n; i++) {
      const k = rng.pick(kinds);
      edits.push(`${k}: ${EDITS[k](rng, bytes, layout)}`);
    }
    return { strategy, bytes, edits };
  }
  return { strategy, bytes, edits: [EDITS[strategy](rng, bytes, layout)] };
}

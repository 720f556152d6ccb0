/**
 * Real compressed blocks out of real fixture images, with the bytes they must decode to.
 * Block positions come from `rdsquashfs -s PATH IMG` (squashfs-tools-ng), not from our reader, so
 * the decompressor tests do not depend on the reader they serve.
 */
import { execFile } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface ImageHeader {
  compressorId: number;
  blockSize: number;
  flags: number;
  inodeTableStart: number;
  /** Payload of the compression-options block, when flag 0x0400 is set. */
  options?: Uint8Array;
}

export interface RealBlock {
  index: number;
  /** Stored bytes (compressed unless `compressed` is false). */
  stored: Buffer;
  compressed: boolean;
  /** What the block must decode to. */
  expected: Buffer;
}

async function readAt(image: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(image, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    if (bytesRead !== length) throw new Error(`${image}: short read at ${offset}`);
    return buf;
  } finally {
    await fh.close();
  }
}

export async function readHeader(image: string): Promise<ImageHeader> {
  const sb = await readAt(image, 0, 96);
  const flags = sb.readUInt16LE(24);
  const header: ImageHeader = {
    compressorId: sb.readUInt16LE(20),
    blockSize: sb.readUInt32LE(12),
    flags,
    inodeTableStart: Number(sb.readBigUInt64LE(64)),
  };
  if (flags & 0x0400) {
    const word = (await readAt(image, 96, 2)).readUInt16LE(0);
    header.options = await readAt(image, 98, word & 0x7fff);
  }
  return header;
}

/** Every stored data block of `path` in `image`, with the matching slice of the source file. */
export async function dataBlocks(image: string, sourceTree: string, path: string): Promise<RealBlock[]> {
  const { blockSize } = await readHeader(image);
  const { stdout } = await execFileP('rdsquashfs', ['-s', path, image]);
  const start = /Blocks start: (\d+)/.exec(stdout);
  if (!start) throw new Error(`rdsquashfs -s ${path}: no block list`);
  const source = await readFile(join(sourceTree, path));
  let pos = Number(start[1]);
  const blocks: RealBlock[] = [];
  for (const m of stdout.matchAll(/Block #(\d+) size: (\d+) \((\w+)\)/g)) {
    const index = Number(m[1]);
    const size = Number(m[2]);
    if (size === 0) continue; // sparse
    blocks.push({
      index,
      stored: await readAt(image, pos, size),
      compressed: m[3] === 'compressed',
      expected: source.subarray(index * blockSize, Math.min((index + 1) * blockSize, source.length)),
    });
    pos += size;
  }
  return blocks;
}

/** The first metadata block of the inode table: its header word and stored payload. */
export async function firstInodeBlock(image: string): Promise<{ compressed: boolean; payload: Buffer }> {
  const { inodeTableStart } = await readHeader(image);
  const word = (await readAt(image, inodeTableStart, 2)).readUInt16LE(0);
  return { compressed: (word & 0x8000) === 0, payload: await readAt(image, inodeTableStart + 2, word & 0x7fff) };
}

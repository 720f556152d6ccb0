/**
 * A raw LZ4 block decoder (the block format, no frame), in TypeScript: it needs no native module, so an
 * lz4 image's metadata decodes without the ~10 ms lz4-napi costs to load (lz4.ts says when each is used).
 *
 * A block is a run of sequences: a token (high nibble: literal count, low nibble: match length - 4;
 * 15 = more length follows in bytes, each added, until one is not 255), the literals, then a 2-byte
 * little-endian offset back into the output and the match, which may overlap what it copies. The last
 * sequence is literals only. Every length and offset is checked against the input and the output before
 * it is used: typed arrays drop writes out of bounds silently, so an unchecked copy would not throw, it
 * would return wrong bytes.
 */

/** Malformed input, or output that would not fit; `reason` says which. */
export class Lz4BlockError extends Error {}

/** Smallest match LZ4 encodes (a match length nibble of 0 means 4 bytes). */
const MIN_MATCH = 4;

/** Decodes `input` into `output`; returns the number of bytes written. Throws Lz4BlockError. */
export function decodeLz4Block(input: Uint8Array, output: Uint8Array): number {
  const inEnd = input.length;
  const outEnd = output.length;
  let ip = 0;
  let op = 0;
  if (inEnd === 0) throw new Lz4BlockError('empty block');
  for (;;) {
    if (ip >= inEnd) throw new Lz4BlockError('ends inside a sequence');
    const token = input[ip++]!;

    let literals = token >>> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (ip >= inEnd) throw new Lz4BlockError('ends inside a literal length');
        b = input[ip++]!;
        literals += b;
      } while (b === 255);
    }
    if (literals > inEnd - ip) throw new Lz4BlockError('literals run past the end of the block');
    if (literals > outEnd - op) throw new Lz4BlockError(`decodes to more than ${outEnd} bytes`);
    if (literals < 16) {
      for (let i = 0; i < literals; i++) output[op + i] = input[ip + i]!;
    } else {
      output.set(input.subarray(ip, ip + literals), op);
    }
    ip += literals;
    op += literals;
    if (ip === inEnd) return op; // the last sequence: literals only

    if (inEnd - ip < 2) throw new Lz4BlockError('ends inside a match offset');
    const offset = input[ip]! | (input[ip + 1]! << 8);
    ip += 2;
    if (offset === 0) throw new Lz4BlockError('match offset 0');
    if (offset > op) throw new Lz4BlockError(`match offset ${offset} before the start of the block`);

    let length = (token & 15) + MIN_MATCH;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (ip >= inEnd) throw new Lz4BlockError('ends inside a match length');
        b = input[ip++]!;
        length += b;
      } while (b === 255);
    }
    if (length > outEnd - op) throw new Lz4BlockError(`decodes to more than ${outEnd} bytes`);
    const from = op - offset;
    if (offset >= length) {
      // No overlap: one copy (a short one byte by byte, cheaper than copyWithin's call).
      if (length < 16) for (let i = 0; i < length; i++) output[op + i] = output[from + i]!;
      else output.copyWithin(op, from, from + length);
    } else {
      // Overlapping: the match repeats the last `offset` bytes; copy forwards byte by byte.
      for (let i = 0; i < length; i++) output[op + i] = output[from + i]!;
    }
    op += length;
  }
}

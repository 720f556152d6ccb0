import { randomBytes } from 'node:crypto';

/** Deterministic, position-dependent bytes (xorshift32): a shifted or mixed read never compares equal. */
export function patternBytes(size: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * `size` bytes of text drawn from 4,096 random 8-letter words: it compresses (lz4 keeps about 80 %,
 * gzip less), so every block of it goes through a decompressor.
 */
export function wordText(size: number): Buffer {
  const words = randomBytes(4096 * 4).toString('hex');
  const picks = randomBytes(Math.floor(size / 9) * 2 + 2);
  const out = Buffer.alloc(size, 0x20);
  for (let at = 0, p = 0; at + 9 <= size; at += 9, p += 2) {
    out.write(words.substr((picks.readUInt16LE(p) % 4096) * 8, 8), at, 'latin1');
  }
  return out;
}

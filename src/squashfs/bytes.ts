/** Little-endian integer readers over Uint8Array (no DataView allocation on hot paths). */

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function s16(b: Uint8Array, o: number): number {
  return (u16(b, o) << 16) >> 16;
}

export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/** Marks an absent table (`0xFFFF_FFFF_FFFF_FFFF`). */
export function isNone64(b: Uint8Array, o: number): boolean {
  return u32(b, o) === 0xffffffff && u32(b, o + 4) === 0xffffffff;
}

/**
 * A u64 as a JS number; values beyond 2^53 - 1 come back as Infinity so every bounds check
 * against a real size fails instead of silently rounding.
 */
export function u64(b: Uint8Array, o: number): number {
  const hi = u32(b, o + 4);
  if (hi >= 0x200000) return Infinity;
  return hi * 0x1_0000_0000 + u32(b, o);
}

/** Byte-wise comparison, as strcmp orders squashfs directory entries. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

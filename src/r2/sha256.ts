/**
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for request signing (sigv4.ts), in TypeScript
 * because node:crypto costs a mount 5.5-9 ms of module loading at start-up, before its first GET can
 * be signed, and a signature needs only a few short hashes: 4 HMACs for the day's key, then one hash
 * and one HMAC of ~300 bytes per request. Checked against node:crypto in test/r2/sha256.test.ts.
 * Not for bulk data: node:crypto is several times faster there (disk-cache.ts uses it).
 */

const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;

/** The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** The first 32 bits of the fractional parts of the square roots of the first 8 primes. */
const INITIAL_STATE = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** The SHA-256 digest of `message` (a string is hashed as UTF-8). */
export function sha256(message: Uint8Array | string): Buffer {
  const input = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  // The message, a 1 bit, zeros, then its length in bits as 64 bits big-endian, to whole blocks.
  const padded = new Uint8Array(Math.ceil((input.length + 9) / BLOCK_BYTES) * BLOCK_BYTES);
  padded.set(input);
  padded[input.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(input.length / 0x20000000));
  view.setUint32(padded.length - 4, (input.length * 8) >>> 0);

  // Plain locals and no destructuring: a mount signs its first GETs before V8 has compiled this, and
  // the interpreter pays for every call and iterator step (measured: 3x slower per signature).
  let h0 = INITIAL_STATE[0];
  let h1 = INITIAL_STATE[1];
  let h2 = INITIAL_STATE[2];
  let h3 = INITIAL_STATE[3];
  let h4 = INITIAL_STATE[4];
  let h5 = INITIAL_STATE[5];
  let h6 = INITIAL_STATE[6];
  let h7 = INITIAL_STATE[7];
  const w = new Int32Array(64);
  for (let offset = 0; offset < padded.length; offset += BLOCK_BYTES) {
    for (let i = 0; i < 16; i++) w[i] = view.getInt32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0;
    let b = h1;
    let c = h2;
    let d = h3;
    let e = h4;
    let f = h5;
    let g = h6;
    let h = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  const digest = Buffer.alloc(DIGEST_BYTES);
  const out = new DataView(digest.buffer, digest.byteOffset, DIGEST_BYTES);
  out.setInt32(0, h0);
  out.setInt32(4, h1);
  out.setInt32(8, h2);
  out.setInt32(12, h3);
  out.setInt32(16, h4);
  out.setInt32(20, h5);
  out.setInt32(24, h6);
  out.setInt32(28, h7);
  return digest;
}

/** HMAC-SHA256 of `message` under `key` (strings as UTF-8). */
export function hmacSha256(key: Uint8Array | string, message: Uint8Array | string): Buffer {
  let keyBytes: Uint8Array = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  if (keyBytes.length > BLOCK_BYTES) keyBytes = sha256(keyBytes);
  const data = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  const inner = Buffer.alloc(BLOCK_BYTES + data.length, 0x36);
  const outer = Buffer.alloc(BLOCK_BYTES + DIGEST_BYTES, 0x5c);
  for (let i = 0; i < keyBytes.length; i++) {
    inner[i] ^= keyBytes[i];
    outer[i] ^= keyBytes[i];
  }
  inner.set(data, BLOCK_BYTES);
  outer.set(sha256(inner), BLOCK_BYTES);
  return sha256(outer);
}

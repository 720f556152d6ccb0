/**
 * Our SHA-256 and HMAC-SHA256 (src/r2/sha256.ts), which sign every GET, against node:crypto and the
 * published vectors: every message length across the padding boundaries, keys shorter than, equal to
 * and longer than a block, UTF-8 strings, and large inputs.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmacSha256, sha256 } from '../../src/r2/sha256.js';

const nodeSha = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
const nodeHmac = (key: Uint8Array | string, data: Uint8Array | string) => createHmac('sha256', key).update(data).digest('hex');

describe('sha256', () => {
  it('gives the FIPS 180-4 example digests', () => {
    expect(sha256('').toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256('abc').toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq').toString('hex')).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
  });

  it('matches node:crypto for every length from 0 to 300 bytes (each padding case)', () => {
    for (let n = 0; n <= 300; n++) {
      const data = randomBytes(n);
      expect(sha256(data).toString('hex'), `length ${n}`).toBe(nodeSha(data));
    }
  });

  it('matches node:crypto for large inputs and for bytes with the high bit set', () => {
    for (const n of [4095, 4096, 65_537, 1 << 20]) {
      const data = randomBytes(n);
      expect(sha256(data).toString('hex'), `length ${n}`).toBe(nodeSha(data));
    }
    expect(sha256(Buffer.alloc(1000, 0xff)).toString('hex')).toBe(nodeSha(Buffer.alloc(1000, 0xff)));
  });

  it('hashes a string as its UTF-8 bytes', () => {
    const text = "backups/ü ñ/(x)*'!~ \u{1F600}.sqsh";
    expect(sha256(text).toString('hex')).toBe(nodeSha(Buffer.from(text, 'utf8')));
  });
});

describe('hmacSha256', () => {
  it('gives the RFC 4231 test vectors (short key, key longer than a block)', () => {
    const key = Buffer.alloc(20, 0x0b);
    expect(hmacSha256(key, 'Hi There').toString('hex')).toBe('b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7');
    expect(hmacSha256('Jefe', 'what do ya want for nothing?').toString('hex')).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    const longKey = Buffer.alloc(131, 0xaa);
    expect(hmacSha256(longKey, 'Test Using Larger Than Block-Size Key - Hash Key First').toString('hex')).toBe(
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    );
  });

  it('matches node:crypto for keys of 0 to 150 bytes and messages of 0 to 200 bytes', () => {
    for (let k = 0; k <= 150; k += 3) {
      for (const m of [0, 1, 55, 56, 63, 64, 65, 119, 200]) {
        const key = randomBytes(k);
        const data = randomBytes(m);
        expect(hmacSha256(key, data).toString('hex'), `key ${k}, message ${m}`).toBe(nodeHmac(key, data));
      }
    }
  });

  it('keys and messages given as strings are their UTF-8 bytes (the sigv4 chain)', () => {
    const secret = 'AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCY\u00e9EXAMPLEKEY';
    let key: Buffer = hmacSha256(secret, '20261125');
    let expected = createHmac('sha256', secret).update('20261125').digest();
    for (const part of ['auto', 's3', 'aws4_request']) {
      key = hmacSha256(key, part);
      expected = createHmac('sha256', expected).update(part).digest();
    }
    expect(key.toString('hex')).toBe(expected.toString('hex'));
  });
});

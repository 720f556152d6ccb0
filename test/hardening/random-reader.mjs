// One of the concurrent readers of concurrency.test.ts (a plain node process, so 16 of them really
// read in parallel): random files, offsets and lengths, each range read through our FUSE mount and
// through the reference (kernel) mount and compared. Prints one JSON line.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';

const { ours, ref, files, reads } = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const seed = Number(process.argv[3]);
let x = seed >>> 0 || 1;
const rnd = (n) => {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return Math.floor((x / 0x1_0000_0000) * n);
};
const total = files.reduce((s, f) => s + Math.min(f.size, 64 << 20) + 4096, 0);
const pick = () => {
  if (rnd(2) === 0) return files[rnd(files.length)];
  let r = rnd(total);
  for (const f of files) {
    r -= Math.min(f.size, 64 << 20) + 4096;
    if (r < 0) return f;
  }
  return files[files.length - 1];
};
const lengths = [1, 511, 4096, 65536, 131072, 262144 + 17];
const diffs = [];
let bytes = 0;
for (let i = 0; i < reads; i++) {
  const f = pick();
  const len = rnd(3) === 0 ? 1 + rnd(300_000) : lengths[rnd(lengths.length)];
  const off = rnd(4) === 0 ? Math.max(0, f.size - rnd(len + 1)) : rnd(f.size + 1);
  const a = Buffer.alloc(len);
  const b = Buffer.alloc(len);
  const fa = openSync(join(ours, f.path), 'r');
  const fb = openSync(join(ref, f.path), 'r');
  try {
    let na = 0;
    let nb = 0;
    try {
      na = readSync(fa, a, 0, len, off);
    } catch (e) {
      diffs.push(`${f.path}@${off}+${len}: our read failed: ${e.message}`);
      continue;
    }
    nb = readSync(fb, b, 0, len, off);
    bytes += na;
    if (na !== nb || !a.subarray(0, na).equals(b.subarray(0, nb)))
      diffs.push(`${f.path}@${off}+${len}: ${na} vs ${nb} bytes, content differs`);
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}
process.stdout.write(JSON.stringify({ reads, bytes, diffs: diffs.slice(0, 20), diffCount: diffs.length }) + '\n');

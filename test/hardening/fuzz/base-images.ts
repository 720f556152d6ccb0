/**
 * The valid images the fuzzer damages: a small tree with every structure (fragments, multi-block
 * and sparse files, a directory large enough for a directory index, symlinks short and long, hard
 * links, a fifo and a device, xattrs inline and out of line, several uids/gids) written by mksquashfs
 * with every compressor and layout option, plus tar2sqfs; and the project's fixture images when built.
 * Small on purpose: thousands of them are walked per minute.
 */
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  linkSync,
  openSync,
  writeSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  chownSync,
  truncateSync,
  readdirSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';

export interface BaseImage {
  name: string;
  path: string;
  /** Relative weight when picking a base for a case. */
  weight: number;
}

/** Pseudo-random but deterministic bytes (compressible in parts, so blocks differ in size). */
function content(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    // Three parts text to one part noise: blocks compress to different sizes, images stay small.
    if ((i >> 10) % 4 !== 0) {
      b[i] = 0x61 + (i % 26);
      continue;
    }
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function setXattr(path: string, name: string, value: string): void {
  execFileSync('setfattr', ['-n', name, '-v', value, path]);
}

/** Writes the source tree (deterministic contents, owners and times). */
export function makeTree(root: string): void {
  mkdirSync(join(root, 'many'), { recursive: true });
  mkdirSync(join(root, 'd1/d2/d3/d4/d5/d6'), { recursive: true });
  mkdirSync(join(root, 'empty-dir'));
  const sizes = [0, 1, 4095, 4096, 4097, 9000, 40_000];
  for (const [i, size] of sizes.entries()) writeFileSync(join(root, `size-${size}`), content(i + 1, size));
  writeFileSync(join(root, 'dup-of-9000'), content(6, 9000));
  writeFileSync(join(root, 'd1/d2/d3/d4/d5/d6/leaf'), 'deep leaf\n');
  // Sparse: holes between written ends (whole zero blocks become sparse blocks).
  writeFileSync(join(root, 'sparse'), 'start');
  truncateSync(join(root, 'sparse'), 1 << 20);
  const fd = openSync(join(root, 'sparse'), 'r+');
  writeSync(fd, 'end', (1 << 20) - 3);
  closeSync(fd);
  // Enough entries for a listing over 8 KiB (directory index entries in the extended inode).
  for (let i = 0; i < 140; i++)
    writeFileSync(join(root, 'many', `entry-${String(i).padStart(4, '0')}-${'n'.repeat(50)}`), `${i}\n`);
  symlinkSync('size-1', join(root, 'link'));
  symlinkSync('x/'.repeat(700) + 'end', join(root, 'long-link'));
  symlinkSync('/nonexistent/target', join(root, 'dangling'));
  linkSync(join(root, 'size-4097'), join(root, 'hard-4097'));
  execFileSync('mkfifo', [join(root, 'fifo')]);
  try {
    execFileSync('mknod', [join(root, 'null-dev'), 'c', '1', '3']);
  } catch {
    // not root: no device node
  }
  setXattr(join(root, 'size-1'), 'user.small', 'v');
  setXattr(join(root, 'size-1'), 'user.big', 'B'.repeat(3000));
  setXattr(join(root, 'size-4095'), 'user.big', 'B'.repeat(3000)); // same value: stored out of line once
  setXattr(join(root, 'many'), 'user.dir', 'on a directory');
  try {
    setXattr(join(root, 'size-0'), 'trusted.t', 'trusted value');
  } catch {
    // trusted.* needs CAP_SYS_ADMIN
  }
  const owners: [string, number, number][] = [
    ['size-9000', 1000, 1000],
    ['size-40000', 65534, 65534],
    ['many', 12345, 54321],
    ['fifo', 7, 8],
  ];
  for (const [p, uid, gid] of owners) {
    try {
      chownSync(join(root, p), uid, gid);
    } catch {
      // not root
    }
  }
  const t = new Date('2024-01-02T03:04:05Z');
  const touch = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory()) touch(p);
    }
    utimesSync(dir, t, t);
  };
  touch(root);
}

/** mksquashfs variants: every compressor, uncompressed metadata (field-level damage reaches the parsers), layout options. */
const VARIANTS: { name: string; weight: number; args: string[] }[] = [
  { name: 'gzip-plain-4k', weight: 6, args: ['-comp', 'gzip', '-b', '4K', '-noI', '-noD', '-noF', '-noX'] },
  { name: 'zstd-plain-nofrag', weight: 4, args: ['-comp', 'zstd', '-b', '8K', '-noI', '-noX', '-no-fragments'] },
  {
    name: 'lz4-plain-noexport-noxattr',
    weight: 3,
    args: ['-comp', 'lz4', '-b', '4K', '-noI', '-no-exports', '-no-xattrs'],
  },
  {
    name: 'xz-plain-always-frag',
    weight: 3,
    args: ['-comp', 'xz', '-b', '16K', '-noI', '-noX', '-always-use-fragments'],
  },
  { name: 'gzip', weight: 3, args: ['-comp', 'gzip', '-b', '4K'] },
  { name: 'xz', weight: 2, args: ['-comp', 'xz', '-b', '8K'] },
  { name: 'lz4', weight: 2, args: ['-comp', 'lz4', '-Xhc', '-b', '4K'] },
  { name: 'zstd', weight: 2, args: ['-comp', 'zstd', '-b', '4K'] },
  { name: 'lzo', weight: 2, args: ['-comp', 'lzo', '-b', '4K'] },
  { name: 'lzma', weight: 1, args: ['-comp', 'lzma', '-b', '4K'] },
];

/** Fixture images (fixtures/out) worth damaging too: bigger trees, other writers. */
const FIXTURES: { name: string; weight: number }[] = [
  { name: 'gzip-uncompressed', weight: 2 },
  { name: 'zstd', weight: 1 },
  { name: 'tar2sqfs-zstd', weight: 1 },
  { name: 'xz-bcj-x86', weight: 1 },
];

/** Builds the base images into `dir` (tree + images); adds fixture images found in `fixturesDir`. */
export function buildBaseImages(dir: string, fixturesDir?: string): BaseImage[] {
  const tree = join(dir, 'tree');
  makeTree(tree);
  const out: BaseImage[] = [];
  for (const v of VARIANTS) {
    const path = join(dir, `${v.name}.sqsh`);
    execFileSync(
      'mksquashfs',
      [tree, path, '-noappend', '-quiet', '-no-progress', '-processors', '1', '-mkfs-time', '0', ...v.args],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    out.push({ name: v.name, path, weight: v.weight });
  }
  const tarPath = join(dir, 'tree.tar');
  execFileSync('tar', ['--xattrs', '--format=pax', '-C', tree, '-cf', tarPath, '.']);
  const t2s = join(dir, 'tar2sqfs-gzip.sqsh');
  execFileSync(
    'tar2sqfs',
    ['--quiet', '--force', '--compressor', 'gzip', '--block-size', '4096', '--exportable', t2s],
    {
      input: readFileSync(tarPath),
      stdio: ['pipe', 'ignore', 'pipe'],
    },
  );
  out.push({ name: 'tar2sqfs-gzip', path: t2s, weight: 2 });
  if (fixturesDir) {
    for (const f of FIXTURES) {
      const path = join(fixturesDir, `${f.name}.sqsh`);
      if (existsSync(path)) out.push({ name: `fixture-${f.name}`, path, weight: f.weight });
    }
  }
  return out;
}

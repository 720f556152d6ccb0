import { execFile } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { BUCKET, MiB, type Sizes } from './config.js';

const run = promisify(execFile);

/**
 * The benchmark's data: trees generated once from a fixed seed, packed with mksquashfs the way the
 * sandbox SDK does, and cached under the data directory (reused across runs).
 */

/** Bump when generation changes, so stale caches are rebuilt. */
const GENERATOR_VERSION = 1;

export interface ImageSpec {
  name: string;
  compression: 'lz4' | 'zstd';
  imagePath: string;
  imageBytes: number;
  /** Object key in the bench bucket. */
  key: string;
  /** Paths inside the image, in read order. */
  smallFiles: string[];
  bigFiles: string[];
  smallBytes: number;
  bigBytes: number;
  /** Directories + files + symlinks (what find lists, the root excluded). */
  entries: number;
}

/** Deterministic PRNG (mulberry32): the same trees on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  'const let function return if else for while import export from default class extends new this ' +
  'async await try catch throw null undefined true false string number boolean interface type ' +
  'buffer offset length block inode fragment metadata cache fetch range request response error ' +
  'value key index size count options config path file directory stream read write open close ' +
  '=> ( ) { } [ ] ; , . = + - * / < > === !== && || ? : 0 1 2 16 32 64 128 4096'
).split(' ');

/** Source-like text: compresses about as well as real code. */
function sourceText(rand: () => number, bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  let indent = 0;
  while (n < bytes) {
    const words = 3 + Math.floor(rand() * 10);
    let line = '  '.repeat(indent);
    for (let i = 0; i < words; i++) line += WORDS[Math.floor(rand() * WORDS.length)] + ' ';
    if (rand() < 0.1) line += `${Math.floor(rand() * 1e6)}`;
    line += '\n';
    indent = Math.max(0, Math.min(6, indent + (rand() < 0.5 ? 1 : -1)));
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

/** Log-uniform size between lo and hi: many small files, a few larger ones. */
function logUniform(rand: () => number, lo: number, hi: number): number {
  return Math.round(Math.exp(Math.log(lo) + rand() * (Math.log(hi) - Math.log(lo))));
}

async function writeFileAt(root: string, rel: string, data: Buffer): Promise<void> {
  const p = join(root, rel);
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, data);
}

/** W1's source tree: `count` files spread over a few levels of directories. */
async function generateSourceTree(
  root: string,
  count: number,
  seed: number,
): Promise<{ files: string[]; bytes: number }> {
  const rand = seededRandom(seed);
  const dirs = ['src'];
  for (let i = 0; i < Math.max(4, Math.floor(count / 25)); i++) {
    const parent = dirs[Math.floor(rand() * dirs.length)]!;
    dirs.push(`${parent}/${['lib', 'util', 'core', 'io', 'net', 'fs', 'test', 'cmd'][i % 8]}${i}`);
  }
  const files: string[] = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const dir = dirs[Math.floor(rand() * dirs.length)]!;
    const rel = `${dir}/file${i}.${['ts', 'js', 'c', 'h', 'md', 'json'][i % 6]}`;
    const size = logUniform(rand, 200, 40_000);
    await writeFileAt(root, rel, sourceText(rand, size));
    files.push(rel);
    bytes += size;
  }
  return { files: files.sort(), bytes };
}

/** W2: a node_modules-like tree (packages with package.json, README, lib/, dist/, nested deps). */
async function generateProjectTree(
  root: string,
  count: number,
  seed: number,
): Promise<{ files: string[]; bytes: number; symlinks: number }> {
  const rand = seededRandom(seed);
  const files: string[] = [];
  let bytes = 0;
  let pkg = 0;
  let symlinks = 0;
  const topLevel: string[] = [];
  while (files.length < count) {
    const scoped = rand() < 0.15;
    const nested = topLevel.length > 10 && rand() < 0.2;
    const base = nested ? `${topLevel[Math.floor(rand() * topLevel.length)]}/node_modules` : 'node_modules';
    const name = scoped ? `@scope${pkg % 17}/pkg-${pkg}` : `pkg-${pkg}`;
    const dir = `${base}/${name}`;
    if (!nested) topLevel.push(dir);
    pkg++;
    const n = Math.min(count - files.length, 3 + Math.floor(rand() * 35));
    const names = ['package.json', 'README.md', 'LICENSE'];
    for (let i = names.length; i < n; i++) {
      const sub = ['lib', 'dist', 'src', 'dist/esm', 'lib/internal'][Math.floor(rand() * 5)];
      names.push(`${sub}/m${i}.${rand() < 0.7 ? 'js' : 'd.ts'}`);
    }
    for (const f of names.slice(0, n)) {
      const size = f === 'LICENSE' ? 1070 : logUniform(rand, 60, 30_000);
      await writeFileAt(root, `${dir}/${f}`, sourceText(rand, size));
      files.push(`${dir}/${f}`);
      bytes += size;
    }
  }
  // A few .bin symlinks, as npm makes them.
  await mkdir(join(root, 'node_modules/.bin'), { recursive: true });
  for (let i = 0; i < Math.min(50, pkg); i++) {
    await symlink(`../pkg-${i}/lib/m3.js`, join(root, `node_modules/.bin/tool${i}`));
    symlinks++;
  }
  return { files: files.sort(), bytes, symlinks };
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, 'w');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (let off = 0; off < bytes; off += buf.length) {
      const n = Math.min(buf.length, bytes - off);
      randomFillSync(buf, 0, n);
      await fh.write(buf, 0, n, off);
    }
  } finally {
    await fh.close();
  }
}

async function countEntries(root: string): Promise<number> {
  const { stdout } = await run('find', [root, '-mindepth', '1', '-printf', '.'], { maxBuffer: 64 * MiB });
  return stdout.length;
}

async function mksquashfs(tree: string, image: string, comp: 'lz4' | 'zstd'): Promise<void> {
  // As the sandbox SDK archives a directory.
  await run('mksquashfs', [tree, image, '-comp', comp, '-noappend', '-no-progress', '-quiet', '-processors', '2'], {
    maxBuffer: 16 * MiB,
  });
}

/** Builds (or reuses) a workload's image. `log` reports slow steps. */
async function cached(
  dataDir: string,
  name: string,
  build: (tree: string, image: string) => Promise<Omit<ImageSpec, 'imagePath' | 'imageBytes' | 'name'>>,
  log: (m: string) => void,
): Promise<ImageSpec> {
  const dir = join(dataDir, name);
  const manifestPath = join(dir, 'manifest.json');
  const imagePath = join(dir, 'data.sqsh');
  if (existsSync(manifestPath) && existsSync(imagePath)) {
    const m = JSON.parse(await readFile(manifestPath, 'utf8')) as ImageSpec & { version: number };
    if (m.version === GENERATOR_VERSION && (await stat(imagePath)).size === m.imageBytes) return m;
  }
  log(`generating ${name} (once; cached in ${dir})`);
  await rm(dir, { recursive: true, force: true });
  const tree = join(dir, 'tree');
  await mkdir(tree, { recursive: true });
  const t0 = Date.now();
  const partial = await build(tree, imagePath);
  const spec: ImageSpec = { name, imagePath, imageBytes: (await stat(imagePath)).size, ...partial };
  // The tree is not needed once packed (the image is the data); keep the disk free.
  await rm(tree, { recursive: true, force: true });
  await writeFile(manifestPath, JSON.stringify({ version: GENERATOR_VERSION, ...spec }, null, 1));
  log(
    `generated ${name}: ${(spec.imageBytes / MiB).toFixed(1)} MiB image in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  return spec;
}

/** W1 backup: big random files + a source tree, lz4 (W3 reads across its first big file). */
export function backupImage(dataDir: string, sizes: Sizes, log: (m: string) => void): Promise<ImageSpec> {
  const name = `w1-${sizes.label}`;
  return cached(
    dataDir,
    name,
    async (tree, image) => {
      const src = await generateSourceTree(tree, sizes.smallFiles, 1);
      const bigFiles: string[] = [];
      for (let i = 0; i < sizes.bigFiles; i++) {
        const rel = `data/blob${i}.bin`;
        await writeRandomFile(join(tree, rel), sizes.bigFileBytes);
        bigFiles.push(rel);
      }
      await mksquashfs(tree, image, 'lz4');
      return {
        compression: 'lz4',
        key: `${name}/data.sqsh`,
        smallFiles: src.files,
        bigFiles,
        smallBytes: src.bytes,
        bigBytes: sizes.bigFiles * sizes.bigFileBytes,
        entries: await countEntries(tree),
      };
    },
    log,
  );
}

/** W2 project tree: many small files, zstd. */
export function projectImage(dataDir: string, sizes: Sizes, log: (m: string) => void): Promise<ImageSpec> {
  const name = `w2-${sizes.label}`;
  return cached(
    dataDir,
    name,
    async (tree, image) => {
      const p = await generateProjectTree(tree, sizes.projectFiles, 2);
      await mksquashfs(tree, image, 'zstd');
      return {
        compression: 'zstd',
        key: `${name}/data.sqsh`,
        smallFiles: p.files,
        bigFiles: [],
        smallBytes: p.bytes,
        bigBytes: 0,
        entries: await countEntries(tree),
      };
    },
    log,
  );
}

/** W3's offsets: `count` random, `bytes`-aligned reads across a file, the same on every run. */
export function randomOffsets(fileBytes: number, count: number, bytes: number): number[] {
  const rand = seededRandom(3);
  const slots = Math.floor(fileBytes / bytes);
  return Array.from({ length: count }, () => Math.floor(rand() * slots) * bytes);
}

export { BUCKET };

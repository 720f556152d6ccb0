import { spawn } from 'node:child_process';
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/**
 * Runs one workload's steps against a mounted tree and prints their timings as JSON. It runs in a
 * child process of the harness: the harness hosts the S3 server and the proxy, and file reads that
 * block on a FUSE mount must never starve the event loop (or thread pool) that serves the mount.
 *
 *   node dist/bench/workload-runner.js < StepsRequest-as-JSON
 */

export type StepsRequest =
  | { kind: 'W1'; root: string; smallFiles: string[]; bigFiles: string[]; concurrency: number }
  /** W1 the way a user restores it: plain commands, one after another (issue 12's table). */
  | { kind: 'W1P'; root: string; firstFile: string; smallTreeDir: string; bigFiles: string[] }
  | { kind: 'W2'; root: string; concurrency: number }
  | { kind: 'W3'; root: string; file: string; offsets: number[]; bytes: number };

export interface StepResult {
  name: string;
  ms: number;
  bytes: number;
  files?: number;
  entries?: number;
  /** Wall-clock bounds (performance.timeOrigin + now), comparable across processes. */
  startEpochMs?: number;
  endEpochMs?: number;
}

const CHUNK = 1024 * 1024;

async function readWhole(path: string, buf: Buffer): Promise<number> {
  const fh = await open(path, 'r');
  try {
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return total;
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

async function readAll(root: string, files: string[], concurrency: number): Promise<number> {
  let next = 0;
  let bytes = 0;
  const worker = async () => {
    const buf = Buffer.allocUnsafe(CHUNK);
    while (next < files.length) {
      const f = files[next++]!;
      const n = await readWhole(join(root, f), buf);
      bytes += n;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, files.length)) }, worker));
  return bytes;
}

async function timed(name: string, fn: () => Promise<Omit<StepResult, 'name' | 'ms'>>): Promise<StepResult> {
  const t0 = performance.now();
  const r = await fn();
  const t1 = performance.now();
  return {
    name,
    ms: t1 - t0,
    ...r,
    startEpochMs: performance.timeOrigin + t0,
    endEpochMs: performance.timeOrigin + t1,
  };
}

/** find(1) with a stat of every entry: depth first, in readdir order, one entry after another. */
async function walk(root: string): Promise<{ entries: number; files: string[] }> {
  const files: string[] = [];
  let entries = 0;
  const visit = async (dir: string): Promise<void> => {
    for (const name of await readdir(join(root, dir))) {
      const rel = dir ? `${dir}/${name}` : name;
      const st = await lstat(join(root, rel));
      entries++;
      if (st.isDirectory()) await visit(rel);
      else if (st.isFile()) files.push(rel);
    }
  };
  await visit('');
  return { entries, files };
}

/**
 * Runs a command in `cwd` as a user would and resolves with the bytes it wrote to stdout. `count`
 * false sends stdout to /dev/null: a GiB through a pipe into this process would cost the machine's
 * CPU in the middle of the measurement (the command's exit status still says whether reads failed).
 */
function command(cwd: string, cmd: string, args: string[], count: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    void open('/dev/null', 'w').then((devNull) => {
      const child = spawn(cmd, args, { cwd, stdio: ['ignore', count ? 'pipe' : devNull.fd, 'pipe'] });
      let bytes = 0;
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => (bytes += d.length));
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        void devNull.close();
        if (code === 0) resolve(bytes);
        else reject(new Error(`${cmd} ${args.join(' ').slice(0, 80)}: exit ${code}: ${stderr.trim().slice(0, 300)}`));
      });
    }, reject);
  });
}

export async function runSteps(req: StepsRequest): Promise<StepResult[]> {
  if (req.kind === 'W1P') {
    return [
      await timed('firstFile', async () => ({
        bytes: await command(req.root, 'cat', [req.firstFile], true),
        files: 1,
      })),
      await timed('smallTree', async () => ({
        bytes: await command(req.root, 'find', [req.smallTreeDir, '-type', 'f', '-exec', 'cat', '{}', '+'], true),
      })),
      await timed('bigFiles', async () => ({
        bytes: await command(req.root, 'cat', req.bigFiles, false),
        files: req.bigFiles.length,
      })),
    ];
  }
  if (req.kind === 'W1') {
    const first = req.smallFiles[0]!;
    return [
      await timed('firstFile', async () => ({
        bytes: await readWhole(join(req.root, first), Buffer.allocUnsafe(CHUNK)),
        files: 1,
      })),
      await timed('smallTree', async () => ({
        bytes: await readAll(req.root, req.smallFiles, req.concurrency),
        files: req.smallFiles.length,
      })),
      await timed('bigFiles', async () => ({
        bytes: await readAll(req.root, req.bigFiles, req.concurrency),
        files: req.bigFiles.length,
      })),
    ];
  }
  if (req.kind === 'W2') {
    let files: string[] = [];
    const find = await timed('findStat', async () => {
      const w = await walk(req.root);
      files = w.files;
      return { bytes: 0, entries: w.entries, files: w.files.length };
    });
    const read = await timed('readAll', async () => ({
      bytes: await readAll(req.root, files, req.concurrency),
      files: files.length,
    }));
    return [find, read];
  }
  return [
    await timed('randomReads', async () => {
      const fh = await open(join(req.root, req.file), 'r');
      try {
        const buf = Buffer.allocUnsafe(req.bytes);
        let bytes = 0;
        for (const off of req.offsets) {
          const { bytesRead } = await fh.read(buf, 0, req.bytes, off);
          bytes += bytesRead;
        }
        return { bytes, files: 1 };
      } finally {
        await fh.close();
      }
    }),
  ];
}

if (process.argv[1]?.endsWith('workload-runner.js')) {
  const chunks: Buffer[] = [];
  process.stdin.on('data', (c: Buffer) => chunks.push(c));
  process.stdin.on('end', () => void main(Buffer.concat(chunks).toString()));
}

function main(input: string): void {
  runSteps(JSON.parse(input) as StepsRequest).then(
    (steps) => process.stdout.write(JSON.stringify(steps)),
    (e: Error) => {
      process.stderr.write(`workload-runner: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}

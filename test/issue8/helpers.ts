/**
 * Shared set-up of the issue 8 tests: a private build of the CLI (test/hardening/build-tools.ts), the
 * project's S3 test server, a tree of files whose data spans many chunks, and a way to read every file
 * through a mount from child processes (a mount served in this process must not be read from it).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RequestRecord, S3TestServer } from '../../src/testing/s3-server.js';

export const execFileP = promisify(execFile);

/** Files of the test tree and their sha256: random data (incompressible) of 40 KiB to 1.5 MiB, ~6 MiB in all. */
export async function makeTree(root: string): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  await mkdir(join(root, 'src/deep'), { recursive: true });
  const sizes = [
    40_000, 120_000, 300_000, 700_000, 1_500_000, 64_000, 900_000, 250_000, 1_200_000, 10_000, 5_000, 800_000,
  ];
  for (const [i, size] of sizes.entries()) {
    const rel = i % 3 === 0 ? `src/deep/f${i}.bin` : i % 3 === 1 ? `src/f${i}.bin` : `f${i}.bin`;
    const bytes = randomBytes(size);
    await writeFile(join(root, rel), bytes);
    digests.set(rel, createHash('sha256').update(bytes).digest('hex'));
  }
  return digests;
}

export async function tempDir(tag: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `issue8-${tag}-`));
}

/** sha256 of each file read through `root` by one sha256sum child process. */
export async function digestsUnder(root: string, files: string[]): Promise<Map<string, string>> {
  const { stdout } = await execFileP(
    'sha256sum',
    files.map((f) => join(root, f)),
    { timeout: 120_000, maxBuffer: 1 << 24 },
  );
  const out = new Map<string, string>();
  for (const line of stdout.trim().split('\n')) {
    const [hash, path] = line.split(/\s+/, 2) as [string, string];
    out.set(path.slice(root.length + 1), hash);
  }
  return out;
}

/** Ranged GETs of `key` from request `from` on (the object's data: not meta.json, not prefetch.json). */
export function dataGets(server: S3TestServer, key: string, from = 0): RequestRecord[] {
  return server.objectGets(key).filter((r) => server.requests.indexOf(r) >= from);
}

export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

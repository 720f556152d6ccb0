/**
 * Hostile images through a real FUSE mount: mutated images (from the fuzzer's generator, chosen so
 * they open but have damaged parts) are mounted with `squashfs-r2 mount`, walked with find and read
 * with cat. Reads of damaged parts fail with EIO (never another error, never a crash); the process
 * stays alive and the mountpoint keeps answering; fusermount -u ends it cleanly. Images the reader
 * refuses at open are refused by the mount command with a message, leaving nothing mounted.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildBaseImages } from './fuzz/base-images.js';
import { loadBases, makeCase } from './fuzz/cases.js';
import { exerciseImage } from './fuzz/exercise.js';
import { type PrivateBuild, privateBuild } from './build-tools.js';
import { mountedHere, startMount } from './mount-process.js';

const execFileP = promisify(execFile);
const SEED = 7;
const DAMAGED_IMAGES = 6;

let work: string;
let build: PrivateBuild;
const damaged: { name: string; path: string; edits: string[] }[] = [];
const refused: { name: string; path: string }[] = [];

beforeAll(async () => {
  build = await privateBuild();
  work = mkdtempSync(join(tmpdir(), 'hardening-fuse-'));
  const bases = loadBases(buildBaseImages(join(work, 'bases')).filter((b) => !b.name.startsWith('fixture-')));
  // Deterministic selection: the first cases that open but fail somewhere inside, and two refused at open.
  for (let i = 0; damaged.length < DAMAGED_IMAGES || refused.length < 2; i++) {
    const c = makeCase(SEED, i, bases);
    const r = await exerciseImage(c.bytes);
    const path = join(work, `case-${i}.sqsh`);
    if (r.opened && (r.errors.ECORRUPT ?? 0) > 0 && damaged.length < DAMAGED_IMAGES) {
      writeFileSync(path, c.bytes);
      damaged.push({ name: `case ${i} (${c.base}, ${c.strategy})`, path, edits: c.edits });
    } else if (!r.opened && refused.length < 2) {
      writeFileSync(path, c.bytes);
      refused.push({ name: `case ${i} (${c.base}, ${c.strategy})`, path });
    }
  }
}, 600_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs a shell pipeline, returning its stderr lines (the command may fail). */
async function sh(script: string): Promise<{ code: number; stderr: string[] }> {
  const r = await execFileP('bash', ['-c', script], { timeout: 120_000, maxBuffer: 64 << 20 }).then(
    (ok) => ({ code: 0, stderr: ok.stderr }),
    (e: { code?: number; stderr?: string; killed?: boolean }) => {
      if (e.killed) throw new Error(`timed out: ${script}`);
      return { code: e.code ?? 1, stderr: e.stderr ?? '' };
    },
  );
  return { code: r.code, stderr: r.stderr.split('\n').filter((l) => l.trim() !== '') };
}

describe('damaged images through FUSE', () => {
  test('reads fail with EIO, the mount stays up and unmounts cleanly', async () => {
    let eioSeen = 0;
    for (const img of damaged) {
      const mp = join(work, `mnt-${damaged.indexOf(img)}`);
      mkdirSync(mp);
      const m = await startMount(build.cli, img.path, mp, ['--log-level', 'debug']);
      try {
        const rootIno = statSync(mp).ino;
        // Walk, list, stat, read every file and every symlink, list xattrs.
        const walk = await sh(
          `cd ${mp} && find . -xdev > /dev/null; find . -xdev -type f -exec cat {} + > /dev/null; ` +
            `find . -xdev -type l -exec readlink {} + > /dev/null; find . -xdev -exec getfattr -d {} + > /dev/null 2>&1; ls -laR . > /dev/null`,
        );
        const unexpected = walk.stderr.filter(
          (l) => !/Input\/output error|No such file or directory|No data available/.test(l),
        );
        expect(unexpected, `${img.name}: ${img.edits.join('; ')}`).toEqual([]);
        eioSeen += walk.stderr.filter((l) => /Input\/output error/.test(l)).length;
        // Still alive, still answering, same root.
        expect(m.alive(), `${img.name}: mount process died: ${m.output()}`).toBe(true);
        expect(statSync(mp).ino).toBe(rootIno);
        await sh(`ls ${mp} > /dev/null`);
        expect(mountedHere(mp)).toBeDefined();
      } finally {
        const code = await m.unmount();
        expect(code, `${img.name}: exit after unmount; output: ${m.output()}`).toBe(0);
      }
      expect(mountedHere(mp)).toBeUndefined();
      expect(m.output()).not.toMatch(/TypeError|RangeError|ReferenceError|Unhandled|uncaught/i);
    }
    console.log(
      `${damaged.length} damaged images mounted: ${eioSeen} EIO errors reported by find/cat/ls/readlink, no other error`,
    );
    expect(eioSeen).toBeGreaterThan(0);
  });

  test('images refused at open: the mount command fails with a message and leaves nothing mounted', async () => {
    for (const img of refused) {
      const mp = join(work, `refused-${refused.indexOf(img)}`);
      mkdirSync(mp);
      const e = await startMount(build.cli, img.path, mp).then(
        async (m) => {
          await m.unmount();
          return undefined;
        },
        (err: Error) => err,
      );
      expect(e, `${img.name} was mounted`).toBeInstanceOf(Error);
      expect(e!.message).toMatch(/corrupt image|unsupported|not a SquashFS/i);
      expect(mountedHere(mp)).toBeUndefined();
    }
  });
});

/**
 * The kernel engine's native helpers (native/fuse_kernel.c) on their own; mounts use them in
 * kernel-engine.test.ts and cli-mount.test.ts.
 *
 * The request reader when its process or worker ends while the thread
 * still delivers: Node deletes the thread-safe function at environment shutdown whether or not the
 * thread uses it, and a thread that went on using it aborted the process (a mount server killed by
 * SIGABRT just after "unmounted", now and then, on a busy machine). Here the thread reads /dev/zero,
 * so it delivers without pause while the environment goes: the old code aborted in most runs.
 */
import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { FuseAddon } from '../../src/fs/kernel/addon.js';

const execFileP = promisify(execFile);
const ADDON = join(import.meta.dirname, '..', '..', 'build', 'Release', 'fuse_kernel.node');
const RUNS = 12;

/** A child that starts the reader on /dev/zero and ends (`how`) while it delivers. */
const CHILD = `
const { Worker } = require('node:worker_threads');
const [addonPath, how] = process.argv.slice(1);
const flood = (addonPath, then) => {
  let delivered = 0;
  require(addonPath).start(require('node:fs').openSync('/dev/zero', 'r'), 65536, () => {
    if (++delivered === 100) then();
  });
};
if (how === 'idle') flood(addonPath, () => {}); // the loop goes idle (the reader is unref'd): a natural exit
else if (how === 'exit') flood(addonPath, () => process.exit(0));
else if (how === 'worker') {
  const source = \`(\${flood})(\${JSON.stringify(addonPath)}, () => require('node:worker_threads').parentPort.postMessage('going'))\`;
  const w = new Worker(source, { eval: true });
  w.once('message', () => w.terminate().then(() => setTimeout(() => {}, 20)));
}
`;

describe('native helpers', () => {
  it('is built (npm install builds it; mounts fall back to a slower worker without it)', () => {
    expect(existsSync(ADDON), `${ADDON} missing: run "bash scripts/build-native.sh"`).toBe(true);
  });

  for (const how of ['idle', 'exit', 'worker'] as const) {
    it(`lets the process end cleanly while it delivers (${how})`, async () => {
      const outcomes: string[] = [];
      for (let i = 0; i < RUNS; i++) {
        const result = await execFileP(process.execPath, ['-e', CHILD, ADDON, how], { timeout: 20_000 }).then(
          () => 'exit 0',
          (e: { code?: number; signal?: string; stderr?: string }) =>
            `${e.signal ?? `exit ${e.code}`}: ${e.stderr?.trim().split('\n')[0] ?? ''}`,
        );
        outcomes.push(result);
      }
      expect(outcomes.filter((o) => o !== 'exit 0')).toEqual([]);
    });
  }

  it('mount() fails with the errno as the code, and mounts nothing', () => {
    const addon = createRequire(import.meta.url)(ADDON) as FuseAddon;
    const missing = join(tmpdir(), `squashfs-r2-no-such-dir-${process.pid}`);
    let error: (Error & { code?: string }) | undefined;
    try {
      addon.mount('test', missing, 'fuse.squashfs-r2', 'fd=0,rootmode=40000,user_id=0,group_id=0');
    } catch (e) {
      error = e as Error & { code?: string };
    }
    expect(error?.code).toBe('ENOENT');
    expect(error?.message).toMatch(/^mount: /);
    expect(() => addon.mount('test', '/tmp\0x', 'fuse', '')).toThrow(TypeError);
  });

  it('spawnWatchdog() runs its command on a pipe: a line when told, end of file when closed', async () => {
    const addon = createRequire(import.meta.url)(ADDON) as FuseAddon;
    const dir = mkdtempSync(join(tmpdir(), 'squashfs-r2-watchdog-'));
    try {
      const script = 'if read line; then echo "line $line $ONLY" > "$1"; else echo eof > "$1"; fi';
      const env = ['ONLY=this'];
      const told = addon.spawnWatchdog(['/bin/sh', '-c', script, 'test', join(dir, 'told')], env);
      const closed = addon.spawnWatchdog(['/bin/sh', '-c', script, 'test', join(dir, 'closed')], env);
      writeSync(told, 'disarm\n');
      closeSync(told);
      closeSync(closed);
      const read = (name: string) => {
        try {
          return readFileSync(join(dir, name), 'utf8');
        } catch {
          return '';
        }
      };
      for (let i = 0; i < 250 && !(read('told') && read('closed')); i++) await sleep(20);
      expect(read('told')).toBe('line disarm this\n');
      expect(read('closed')).toBe('eof\n');
      expect(() => addon.spawnWatchdog(['/nonexistent/watchdog'], [])).toThrow(/spawn watchdog/);
      expect(() => addon.spawnWatchdog([], [])).toThrow(TypeError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The native request reader (native/fuse_reader.c) when its process or worker ends while the thread
 * still delivers: Node deletes the thread-safe function at environment shutdown whether or not the
 * thread uses it, and a thread that went on using it aborted the process (a mount server killed by
 * SIGABRT just after "unmounted", now and then, on a busy machine). Here the thread reads /dev/zero,
 * so it delivers without pause while the environment goes: the old code aborted in most runs.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const execFileP = promisify(execFile);
const ADDON = join(import.meta.dirname, '..', '..', 'build', 'Release', 'fuse_reader.node');
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

describe('native request reader', () => {
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
});

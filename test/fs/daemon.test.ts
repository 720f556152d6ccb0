/**
 * The background-start protocol (src/fs/daemon.ts) that bin/squashfs-r2 also speaks in sh: arguments
 * on stdin, one report on fd 3. The end-to-end paths are in cli-mount.test.ts; here, its edges.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  awaitReadiness,
  decodeArgs,
  encodeArgs,
  formatReadiness,
  parseReadiness,
  READY_FD,
  SERVER_MALLOC_TUNABLES,
  SERVER_NODE_FLAGS,
} from '../../src/fs/daemon.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

describe('readiness report', () => {
  it('round-trips ready and failures with multi-line messages and their exit code', () => {
    expect(parseReadiness(formatReadiness({ ready: true }))).toEqual({ ready: true });
    const failure = { error: 'squashfs-r2 mount: bad option\n\nusage: ...', exitCode: 2 };
    expect(parseReadiness(formatReadiness(failure))).toEqual(failure);
  });

  it('is not a report when truncated or foreign', () => {
    expect(parseReadiness('')).toBeUndefined();
    expect(parseReadiness('rea')).toBeUndefined();
    expect(parseReadiness('{"ready":true}\n')).toBeUndefined();
    expect(parseReadiness('exit two\nmessage')).toBeUndefined();
  });
});

describe('arguments on stdin', () => {
  it('keep spaces, newlines and empty strings; a truncated list is refused', () => {
    const args = ['mount', 'https://h/x?X-Amz-Signature=a b', '', 'line\nbreak'];
    expect(decodeArgs(encodeArgs(args))).toEqual(args);
    expect(decodeArgs('')).toEqual([]);
    expect(() => decodeArgs('mount\0trunc')).toThrow(/truncated/);
  });
});

describe('server node flags', () => {
  it('bin/squashfs-r2 starts its node processes with the same flags as the node paths', () => {
    const script = readFileSync(`${REPO_ROOT}/bin/squashfs-r2`, 'utf8');
    expect(script).toMatch(/^flags=/m);
    expect(script.match(/^flags="?(.*?)"?$/m)![1]).toBe(SERVER_NODE_FLAGS.join(' '));
    expect(script).toContain('exec node $flags "$cli"');
    expect(script).toContain('setsid -f node $flags "$cli" --serve-detached');
  });

  it('bin/squashfs-r2 gives its mount servers the same malloc settings as the node paths, unless GLIBC_TUNABLES is set', () => {
    const script = readFileSync(`${REPO_ROOT}/bin/squashfs-r2`, 'utf8');
    expect(script.match(/^tunables="?(.*?)"?$/m)?.[1]).toBe(SERVER_MALLOC_TUNABLES);
    // Only when unset: the caller's own settings win.
    expect(script).toMatch(/\[ -z "\$\{GLIBC_TUNABLES\+set\}" \]; then export GLIBC_TUNABLES="\$tunables"/);
  });
});

describe('awaitReadiness', () => {
  const child = (script: string) =>
    spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });

  it('takes the report at end of file, even when the process exits first', async () => {
    const c = child(`require('fs').writeSync(${READY_FD}, 'exit 3\\nno luck\\n'); process.exit(1)`);
    expect(await awaitReadiness(c, 10_000)).toEqual({ error: 'no luck', exitCode: 3 });
  });

  it('says how the process ended when it reported nothing', async () => {
    const c = child('process.exit(7)');
    expect(await awaitReadiness(c, 10_000)).toEqual({
      error: 'the mount process exited with status 7 before the mount was ready',
      exitCode: 1,
    });
  });

  it('gives up after the timeout and stops the process', async () => {
    const c = child('setTimeout(() => {}, 60_000)');
    const exited = new Promise((done) => c.on('exit', (_code, signal) => done(signal)));
    expect(await awaitReadiness(c, 300)).toMatchObject({ error: expect.stringMatching(/not become ready/) });
    expect(await exited).toBe('SIGTERM');
  });
});

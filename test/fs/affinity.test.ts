/**
 * `--fuse-cpu`: a server's event loop and libfuse's threads share one CPU (they hand every request to
 * each other), while the threads Node started before (V8's helpers, libuv's pool) keep every CPU.
 * Checked on real servers through /proc/<pid>/task/<tid>/status.
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentCpu, parseFuseCpu } from '../../src/fs/affinity.js';
import { type Fixture, fixture } from '../helpers/fixtures.js';
import { cleanupMountpoint, ensureBuilt, runCli, serverPid, tempMountpoint } from './helpers.js';

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const canPin = availableParallelism() >= 2 && hasTaskset();

interface ThreadCpus {
  tid: number;
  name: string;
  cpus: string;
}

/** Each thread's name and allowed CPU list ("1", "0-1"). */
async function threadCpus(pid: number): Promise<ThreadCpus[]> {
  const out: ThreadCpus[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8');
    out.push({ tid: Number(tid), name: /^Name:\s*(.*)$/m.exec(status)![1]!, cpus: /^Cpus_allowed_list:\s*(.*)$/m.exec(status)![1]! });
  }
  return out;
}

describe('parseFuseCpu', () => {
  it('takes auto, none and CPU numbers, and refuses anything else', () => {
    expect(parseFuseCpu('auto')).toBe('auto');
    expect(parseFuseCpu('none')).toBe('none');
    expect(parseFuseCpu('3')).toBe(3);
    for (const bad of ['', '-1', '1,2', '0-1', 'all', '1.5']) expect(() => parseFuseCpu(bad), bad).toThrow(/--fuse-cpu/);
  });

  it('knows which CPU the calling thread is on', () => {
    const cpu = currentCpu();
    expect(cpu).toBeTypeOf('number');
    expect(cpu!).toBeLessThan(availableParallelism() + 64); // a CPU number, not some other field
  });
});

describe.skipIf(!canPin)('servers started by the CLI', () => {
  let image: Fixture;
  const mountpoints: string[] = [];
  beforeAll(async () => {
    await ensureBuilt();
    image = await fixture('lz4');
  });
  afterAll(async () => {
    for (const dir of mountpoints) await cleanupMountpoint(dir);
  });

  /** Mounts with `args`, reads a file (so libfuse has started its workers) and returns the threads. */
  async function serve(args: string[]): Promise<{ pid: number; threads: ThreadCpus[]; done: () => Promise<unknown> }> {
    const dir = await tempMountpoint('sqfs-cpu-');
    mountpoints.push(dir);
    const r = await runCli(['mount', image.path, dir, ...args]);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    await readFile(join(dir, 'empty-file'));
    const pid = (await serverPid(dir))!;
    return { pid, threads: await threadCpus(pid), done: () => runCli(['unmount', dir]) };
  }

  const onOneCpu = (t: ThreadCpus) => /^\d+$/.test(t.cpus);

  /**
   * The serving threads (the event loop and the threads started from it once pinned) share one CPU,
   * at least `min` of them; Node's helpers (libuv's pool, V8's platform threads: started before the
   * pinning) keep every CPU. By name they cannot be told apart: whether a helper started before the
   * server renamed itself depends on how its modules loaded.
   */
  function expectPinnedTogether(server: { pid: number; threads: ThreadCpus[] }, min: number): void {
    const serving = server.threads.filter(onOneCpu);
    const helpers = server.threads.filter((t) => !onOneCpu(t));
    expect(serving.length, JSON.stringify(server.threads)).toBeGreaterThanOrEqual(min);
    expect(serving.map((t) => t.tid)).toContain(server.pid); // the event loop
    expect(new Set(serving.map((t) => t.cpus)).size, JSON.stringify(serving)).toBe(1);
    expect(helpers.length).toBeGreaterThan(0);
  }

  it('kernel engine (the default as root): nothing pinned by default (it gained nothing, and cost start-up); --fuse-cpu N pins the event loop and the thread reading /dev/fuse together', async () => {
    const auto = await serve([]);
    try {
      for (const t of auto.threads) expect(t.cpus, JSON.stringify(t)).not.toMatch(/^\d+$/);
    } finally {
      await auto.done();
    }
    const pinned = await serve(['--fuse-cpu', String(availableParallelism() - 1)]);
    try {
      expectPinnedTogether(pinned, 2); // main + the reader thread
    } finally {
      await pinned.done();
    }
  });

  it('libfuse engine: pin the event loop and the FUSE threads to one CPU by default; Node\'s own helpers keep every CPU', async () => {
    const served = await serve(['--fuse-engine', 'libfuse']);
    try {
      expectPinnedTogether(served, 2); // main + libfuse
    } finally {
      await served.done();
    }
  });

  it('--fuse-cpu N pins to CPU N; --fuse-cpu none pins nothing', async () => {
    const cpu = availableParallelism() - 1;
    const pinned = await serve(['--fuse-cpu', String(cpu)]);
    try {
      expectPinnedTogether(pinned, 2);
      for (const t of pinned.threads.filter(onOneCpu)) expect(t.cpus).toBe(String(cpu));
    } finally {
      await pinned.done();
    }
    const free = await serve(['--fuse-cpu', 'none']);
    try {
      for (const t of free.threads) expect(t.cpus, JSON.stringify(t)).not.toMatch(/^\d+$/);
    } finally {
      await free.done();
    }
  });

  it('a bad --fuse-cpu is a usage error, before anything is mounted', async () => {
    const dir = await tempMountpoint('sqfs-cpu-');
    mountpoints.push(dir);
    const r = await runCli(['mount', image.path, dir, '--fuse-cpu', 'fast']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--fuse-cpu: expected auto, none or a CPU number/);
    const backup = await runCli(['mount-backup', '--fuse-cpu', 'fast', 'some-id', dir]);
    expect(backup.code).not.toBe(0);
    expect(backup.stderr).toMatch(/--fuse-cpu: expected auto, none or a CPU number/);
  });
});

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockDir, startTime } from '../../src/backup/dir-lock.js';

// The per-dir lock that keeps two restores (or a restore and an unmount) of one dir from interleaving.
describe('lockDir', () => {
  let stateDir: string;
  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'sqr2-lock-'));
  });
  afterAll(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it('two takers at once: exactly one holds the lock, every time', async () => {
    for (let round = 0; round < 200; round++) {
      const results = await Promise.allSettled([lockDir(stateDir, '/some/dir'), lockDir(stateDir, '/some/dir')]);
      const held = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<() => Promise<void>>[];
      const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
      expect(held, `round ${round}`).toHaveLength(1);
      expect(String(refused[0].reason)).toMatch(/another restore or unmount of \/some\/dir is in progress/);
      await held[0].value();
    }
  });

  it('a lock held by a live process is refused; released, it can be taken again', async () => {
    const unlock = await lockDir(stateDir, '/a');
    await expect(lockDir(stateDir, '/a')).rejects.toThrow(/in progress \(pid \d+\)/);
    // Another dir is not blocked.
    const other = await lockDir(stateDir, '/b');
    await other();
    await unlock();
    const again = await lockDir(stateDir, '/a');
    await again();
    expect(await readdir(join(stateDir, 'locks'))).toEqual([]);
  });

  it('a lock whose owner died is taken over', async () => {
    const dead = spawn(process.execPath, ['-e', '0']);
    const pid = dead.pid as number;
    await new Promise((r) => dead.on('exit', r));
    const unlock = await lockDir(stateDir, '/c');
    const [name] = await readdir(join(stateDir, 'locks'));
    await writeFile(join(stateDir, 'locks', name, 'pid'), String(pid));
    const taken = await lockDir(stateDir, '/c');
    await taken();
    await unlock(); // the old holder's release must not have removed anything else by now
    expect(await readdir(join(stateDir, 'locks'))).toEqual([]);
  });

  it("a lock whose pid now belongs to another process (reused) is taken over; its own process's is not", async () => {
    const unlock = await lockDir(stateDir, '/e');
    const [name] = await readdir(join(stateDir, 'locks'));
    const owner = join(stateDir, 'locks', name!, 'pid');
    const [pid, start, token] = (await readFile(owner, 'utf8')).split(' ');
    expect(pid).toBe(String(process.pid));
    expect(start).toBe(startTime(process.pid));
    await expect(lockDir(stateDir, '/e')).rejects.toThrow(/in progress/);
    // The same pid, started at another time: the owner died and its pid went to this process.
    await writeFile(owner, `${pid} ${Number(start) + 1} ${token}`);
    const taken = await lockDir(stateDir, '/e');
    await unlock(); // no longer ours: must leave the new owner's lock alone
    await expect(lockDir(stateDir, '/e')).rejects.toThrow(/in progress/);
    await taken();
    expect(await readdir(join(stateDir, 'locks'))).toEqual([]);
  });

  it('a lock dir without an owner (left by a crash of an older version) is taken over', async () => {
    const unlock = await lockDir(stateDir, '/d');
    const [name] = await readdir(join(stateDir, 'locks'));
    await unlock();
    await mkdir(join(stateDir, 'locks', name));
    const taken = await lockDir(stateDir, '/d');
    await taken();
    expect(await readdir(join(stateDir, 'locks'))).toEqual([]);
  });
});

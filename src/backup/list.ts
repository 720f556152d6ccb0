import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isOurProcess } from './lower.js';
import { isMountPoint } from './mounts.js';
import { type RestoreRecord, readRecords, stateDirFrom } from './state.js';

/** Optional stats a lower mount process may publish beside its mountpoint (`<base>/stats.json`). */
export const STATS_FILE = 'stats.json';

export interface RestoreStatus extends RestoreRecord {
  overlayMounted: boolean;
  lowerMounted: boolean;
  lowerAlive: boolean;
  /** "active" when everything is in place, else what is wrong (e.g. after a crash or reboot). */
  health: 'active' | 'mounting' | 'broken' | 'detached';
  stats?: unknown;
}

export async function listRestores(stateDir?: string): Promise<RestoreStatus[]> {
  const dir = stateDirFrom(stateDir);
  const out: RestoreStatus[] = [];
  for (const rec of await readRecords(dir)) {
    const overlayMounted = isMountPoint(rec.dir);
    const lowerMounted = isMountPoint(rec.lower);
    const lowerAlive = rec.lowerPid !== undefined && isOurProcess(rec.lowerPid, rec.lower);
    const stats = await readFile(join(rec.base, STATS_FILE), 'utf8').then(
      (t) => JSON.parse(t) as unknown,
      () => undefined,
    );
    const health =
      rec.status !== 'active' ? rec.status : overlayMounted && lowerMounted && lowerAlive ? 'active' : 'broken';
    out.push({ ...rec, overlayMounted, lowerMounted, lowerAlive, health, stats });
  }
  return out;
}

import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BackupError } from './layout.js';
import { isMountPoint, waitFor } from './mounts.js';

export const OVERLAY_TOOL = 'fuse-overlayfs';
/** How the kernel lists a fuse-overlayfs mount in mountinfo. */
export const OVERLAY_FS_TYPE = 'fuse.fuse-overlayfs';

/** Looks the tool up on PATH, so a missing fuse-overlayfs is reported before anything is mounted. */
export function findOnPath(tool: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

export function requireOverlayTool(): string {
  const found = findOnPath(OVERLAY_TOOL);
  if (!found)
    throw new BackupError(
      `${OVERLAY_TOOL} not found on PATH: install it (apt-get install fuse-overlayfs, or scripts/setup.sh)`,
    );
  return found;
}

export interface OverlayPaths {
  lower: string;
  upper: string;
  work: string;
}

/**
 * Mounts fuse-overlayfs on `dir` (it daemonizes itself once the mount exists) and waits until the
 * kernel lists it. Paths are ours (the state dir was checked for "," and ":"), so no escaping is needed.
 */
export async function mountOverlay(tool: string, p: OverlayPaths, dir: string, timeoutMs = 15_000): Promise<void> {
  const opts = `lowerdir=${p.lower},upperdir=${p.upper},workdir=${p.work}`;
  await new Promise<void>((resolve, reject) => {
    execFile(tool, ['-o', opts, dir], { timeout: timeoutMs }, (err, _out, stderr) => {
      if (err) reject(new BackupError(`${OVERLAY_TOOL} failed on ${dir}: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
  if (!(await waitFor(() => isMountPoint(dir), timeoutMs))) {
    throw new BackupError(`${OVERLAY_TOOL} returned but ${dir} is not mounted`);
  }
}

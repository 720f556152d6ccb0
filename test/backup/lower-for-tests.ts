import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type LowerCommand, ourMountCommand } from '../../src/backup/lower.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const standIn = fileURLToPath(new URL('./stand-in-lower.mjs', import.meta.url));

/** True once our own FUSE mount command is in the tree (issue 4); until then tests use the stand-in. */
export const ownMountAvailable = ['src/fs/index.ts', 'src/r2/open-source.ts', 'src/squashfs/image.ts', 'dist/src/backup/lower-daemon.js'].every((f) =>
  existsSync(`${repo}${f}`),
);

export function lowerCommandFor(endpoint: string): LowerCommand {
  if (ownMountAvailable && !process.env.BACKUP_TEST_STAND_IN) return ourMountCommand;
  return (req) => [process.execPath, standIn, endpoint, req.source, req.mountpoint];
}

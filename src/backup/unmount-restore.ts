import { teardownRestore } from './restore.js';

/**
 * `squashfs-r2 unmount <dir>` for a restored dir: tears the restore down (overlay, lower mount, its
 * process, state dirs) and tells where kept writes went. Resolves false when `dir` is not a restored
 * dir, so the caller falls back to a plain FUSE unmount.
 */
export async function unmountRestoredDir(
  dir: string,
  options: { discardWrites?: boolean; stateDir?: string; print?: (line: string) => void } = {},
): Promise<boolean> {
  const print = options.print ?? ((l: string) => process.stderr.write(`squashfs-r2 unmount: ${l}\n`));
  const result = await teardownRestore(dir, options);
  if (!result) return false;
  for (const m of result.lazyUnmounts) print(`${m} was busy: detached, released when the last open file closes`);
  if (result.savedWrites) print(`writes kept in ${result.savedWrites}`);
  else if (result.discardedWrites) print('writes discarded');
  print(`restore of backup ${result.record.backupId} on ${result.record.dir} removed`);
  return true;
}

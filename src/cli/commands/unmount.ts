import { parseArgs } from 'node:util';
import { UsageError } from '../usage-error.js';

export const usage = `usage: squashfs-r2 unmount <dir> [--lazy] [--discard-writes] [--state-dir D]

Unmounts a squashfs-r2 mount (fusermount -u), or tears down a restored backup directory made by
mount-backup: the overlay, then its lower mount and process, then the restore's state. Writes made
in a restored directory are kept (their path is printed) unless --discard-writes is given.

A busy plain mount (open files, a shell inside) is an error unless --lazy is given: then it
disappears now and is released when the last file closes.

options:
  -z, --lazy          detach a busy mount instead of failing
  --discard-writes    delete the writes of a restored directory instead of keeping them
  --state-dir D       state dir of mount-backup (default /var/lib/squashfs-r2/restores,
                      or SQUASHFS_R2_STATE_DIR)
`;


function parseUnmountArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      lazy: { type: 'boolean', short: 'z' },
      'discard-writes': { type: 'boolean' },
      'state-dir': { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
}

export async function run(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseUnmountArgs>;
  try {
    parsed = parseUnmountArgs(argv);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
  if (parsed.positionals.length !== 1) throw new UsageError(`expected <dir>\n\n${usage}`);
  const target = parsed.positionals[0] as string;

  // A restored backup dir first: its overlay must go before its lower mount, and its writes are kept.
  const { unmountRestoredDir } = await import('../../backup/unmount-restore.js');
  const restored = await unmountRestoredDir(target, {
    discardWrites: parsed.values['discard-writes'],
    stateDir: parsed.values['state-dir'],
  });
  if (restored) return 0;
  if (parsed.values['discard-writes']) {
    throw new UsageError(`${target} is not a restored backup directory; --discard-writes applies only to those`);
  }

  const { unmountFuse } = await import('../../fs/unmount.js');
  const result = await unmountFuse(target, { lazy: parsed.values.lazy });
  if (result.mode === 'lazy')
    process.stderr.write('squashfs-r2 unmount: detached; released when the last open file closes\n');
  return 0;
}

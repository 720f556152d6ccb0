import { parseArgs } from 'node:util';

export const usage = `usage: squashfs-r2 unmount <mountpoint> [--lazy]

Unmounts a squashfs-r2 mount (fusermount -u). A busy mount (open files, a shell inside) is an
error unless --lazy is given: then it disappears now and is released when the last file closes.
`;

class UsageError extends Error {
  readonly exitCode = 2;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { lazy: { type: 'boolean', short: 'z' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
  if (parsed.positionals.length !== 1) throw new UsageError(`expected <mountpoint>\n\n${usage}`);
  const { unmountFuse } = await import('../../fs/unmount.js');
  const result = await unmountFuse(parsed.positionals[0] as string, { lazy: parsed.values.lazy });
  if (result.mode === 'lazy') process.stderr.write('squashfs-r2 unmount: detached; released when the last open file closes\n');
  return 0;
}

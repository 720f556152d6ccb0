import { parseCommandArgs, quietSdkNotice, usageError } from '../../backup/cli-options.js';
import { runDemo } from '../../backup/demo.js';

export const usage = `usage: squashfs-r2 demo [--compression lz4|zstd|gzip] [--work-dir D] [--keep]

Runs the backup lifecycle end to end with no cloud account: starts a local S3-compatible server
(s3rver on 127.0.0.1), backs up a sample directory, restores it lazily with mount-backup, reads and
writes it, restores again, lists and unmounts, narrating each step with its timing. Needs root
(FUSE mounts) and fuse-overlayfs; everything it starts is cleaned up.

options:
  --work-dir D    keep the server data, sample and state in D (kept afterwards)
  --keep          keep the temporary work dir
`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(
    {
      args: argv,
      options: { 'work-dir': { type: 'string' }, keep: { type: 'boolean' }, compression: { type: 'string' } },
    },
    usage,
  );
  const v = parsed.values;
  quietSdkNotice();
  const compression = v.compression as 'lz4' | 'zstd' | 'gzip' | undefined;
  if (compression && !['lz4', 'zstd', 'gzip'].includes(compression))
    usageError(new Error(`unknown compression "${compression}"`), usage);
  await runDemo({ workDir: v['work-dir'], keep: v.keep, compression });
  return 0;
}

import {
  BUCKET_FLAGS,
  BUCKET_USAGE,
  bucketOptionsFrom,
  parseCommandArgs,
  quietSdkNotice,
} from '../../backup/cli-options.js';
import { createBackup } from '../../backup/create.js';
import { BackupInputError, type Compression } from '../../backup/layout.js';
import { resolveBucketOptions } from '../../backup/s3-client.js';

export const usage = `usage: squashfs-r2 create-backup [options] <dir>

Archives <dir> with mksquashfs and uploads it as <prefix>/<id>/data.sqsh (multipart), then writes
<prefix>/<id>/meta.json. Prints the new backup id on stdout; progress goes to stderr.

options:
  --compression C     lz4 (default), zstd or gzip
  --exclude PATTERN   leave out matching paths (mksquashfs wildcards, relative to <dir>; repeatable)
  --ttl SECONDS       how long the backup may be restored (default 259200 = 3 days)
  --name N            a label stored in meta.json
  -q, --quiet         no progress
${BUCKET_USAGE}`;

const MiB = 1024 * 1024;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(
    {
      args: argv,
      allowPositionals: true,
      options: {
        ...BUCKET_FLAGS,
        compression: { type: 'string' },
        exclude: { type: 'string', multiple: true },
        ttl: { type: 'string' },
        name: { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
      },
    },
    usage,
  );
  const { values: v, positionals } = parsed;
  quietSdkNotice();
  if (positionals.length !== 1) throw new BackupInputError(`expected <dir>\n\n${usage}`);
  let ttl: number | undefined;
  if (v.ttl !== undefined) {
    ttl = Number(v.ttl);
    if (!/^\d+$/.test(v.ttl) || ttl <= 0)
      throw new BackupInputError(`--ttl must be a positive whole number of seconds, got ${JSON.stringify(v.ttl)}`);
  }
  const bucket = resolveBucketOptions(bucketOptionsFrom(v));
  const tty = process.stderr.isTTY;
  let lastShown = -1;
  const meta = await createBackup(positionals[0], {
    ...bucket,
    prefix: v.prefix,
    compression: v.compression as Compression | undefined,
    excludes: v.exclude,
    ttl,
    name: v.name,
    onPhase: v.quiet ? undefined : (phase, detail) => process.stderr.write(`create-backup: ${phase}: ${detail}\n`),
    onProgress: v.quiet
      ? undefined
      : (loaded, total) => {
          const pct = total > 0 ? Math.floor((loaded / total) * 100) : 100;
          // On a terminal redraw one line; in a log, one line per 10 %.
          if (!tty && pct < 100 && Math.floor(pct / 10) === Math.floor(lastShown / 10)) return;
          lastShown = pct;
          const line = `create-backup: uploaded ${(loaded / MiB).toFixed(1)} / ${(total / MiB).toFixed(1)} MiB (${pct} %)`;
          process.stderr.write(tty ? `\r${line}${pct === 100 ? '\n' : ''}` : `${line}\n`);
        },
  });
  if (!v.quiet) process.stderr.write(`create-backup: done: ${meta.sizeBytes} bytes, ttl ${meta.ttl} s\n`);
  process.stdout.write(`${meta.id}\n`);
  return 0;
}

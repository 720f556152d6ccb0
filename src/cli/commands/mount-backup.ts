import {
  BUCKET_FLAGS,
  BUCKET_USAGE,
  bucketOptionsFrom,
  parseCommandArgs,
  quietSdkNotice,
} from '../../backup/cli-options.js';
import { BackupInputError } from '../../backup/layout.js';
import { mountBackup } from '../../backup/restore.js';
import { type FuseCpu, parseFuseCpu } from '../../fs/affinity.js';

export const usage = `usage: mount-backup [options] <backup-id> <dir>
       squashfs-r2 mount-backup [options] <backup-id> <dir>

Restores a backup onto <dir> without downloading it: data.sqsh is mounted read-only with squashfs-r2's
FUSE mount and fuse-overlayfs puts a writable layer on top. Returns once <dir> is usable. <dir> itself
shows the backed-up dir's owner, mode, mtime and xattrs. A missing <dir> is created with its parents
(0755), once the backup is found and not expired; a file, or a path in the state dir, is refused.
Restoring again onto <dir> replaces the earlier restore; its writes are moved aside (path printed).

options:
  --cache-size N      memory for the lower mount's caches, in total (e.g. 256M): 1/8 (4M to 64M) for
                      decoded blocks, the rest for raw chunks of the archive
  --cache-dir D       keep fetched chunks of archives on disk in D (per bucket/key/ETag, checksummed):
                      restoring the same backup again fetches nothing twice
  --cache-dir-max N   size limit of --cache-dir, whole archives evicted least recently used (default 10G)
  --hydrate           once mounted, fetch the whole archive in the background below every read
                      (needs --cache-dir unless the archive fits the chunk memory); progress in "list"
  --fuse-cpu CPU      auto (default), none or a CPU number: the CPU the lower mount's event loop and
                      libfuse's threads share (see "squashfs-r2 mount --help")
  --record-prefetch   record what this restore reads in its first --record-seconds and store it beside
                      the backup (prefetch.json); later restores fetch those parts first, right after mounting
  --record-seconds N  length of the recording (default 120)
  --state-dir D       where restores keep their mounts and writes (default /var/lib/squashfs-r2/restores,
                      or SQUASHFS_R2_STATE_DIR)
  --discard-writes    delete the writes of a replaced restore instead of saving them
  -q, --quiet         no progress lines
${BUCKET_USAGE}`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(
    {
      args: argv,
      allowPositionals: true,
      options: {
        ...BUCKET_FLAGS,
        'cache-size': { type: 'string' },
        'cache-dir': { type: 'string' },
        'cache-dir-max': { type: 'string' },
        hydrate: { type: 'boolean' },
        'fuse-cpu': { type: 'string' },
        'record-prefetch': { type: 'boolean' },
        'record-seconds': { type: 'string' },
        'state-dir': { type: 'string' },
        'discard-writes': { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
      },
    },
    usage,
  );
  const { values: v, positionals } = parsed;
  quietSdkNotice();
  if (positionals.length !== 2) throw new BackupInputError(`expected <backup-id> <dir>\n\n${usage}`);
  const [id, dir] = positionals;
  let fuseCpu: FuseCpu | undefined;
  try {
    fuseCpu = v['fuse-cpu'] === undefined ? undefined : parseFuseCpu(v['fuse-cpu']);
  } catch (e) {
    throw new BackupInputError(`${(e as Error).message}\n\n${usage}`);
  }
  const say = v.quiet ? () => undefined : (m: string) => process.stderr.write(`mount-backup: ${m}\n`);
  const result = await mountBackup(id, dir, {
    ...bucketOptionsFrom(v),
    cacheSize: v['cache-size'],
    cacheDir: v['cache-dir'],
    cacheDirMax: v['cache-dir-max'],
    hydrate: v.hydrate,
    fuseCpu,
    recordPrefetch: v['record-prefetch'],
    recordSeconds: v['record-seconds'] === undefined ? undefined : Number(v['record-seconds']),
    stateDir: v['state-dir'],
    discardWrites: v['discard-writes'],
    onStep: say,
    onWarning: (m) => process.stderr.write(`mount-backup: warning: ${m}\n`),
  });
  for (const r of result.replaced) {
    if (r.savedWrites)
      process.stderr.write(
        `mount-backup: writes of the previous restore of ${r.record.dir} saved in ${r.savedWrites}\n`,
      );
    else if (r.discardedWrites) say(`writes of the previous restore of ${r.record.dir} discarded`);
    for (const m of r.lazyUnmounts) say(`${m} was busy: lazily unmounted`);
  }
  const t = result.timingsMs;
  const name = result.meta.name ? ` ("${result.meta.name}")` : '';
  process.stdout.write(
    `restored backup ${id}${name} on ${result.record.dir} in ${t.total} ms (meta ${t.meta} ms, lower ${t.lower} ms, overlay ${t.overlay} ms)\n`,
  );
  return 0;
}

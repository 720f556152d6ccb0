/**
 * The libfuse 2.9 options (`-o a,b,c`) a mount runs with. fuse-native only forwards the options it
 * knows by name (use_ino is not among them), so the list is built here and handed over raw.
 */
export interface FuseTuning {
  /** Let users other than the mounting one in (needs user_allow_other in /etc/fuse.conf unless root). */
  allowOther?: boolean;
  /** Have fusermount unmount when this process dies, even by SIGKILL (default true). */
  autoUnmount?: boolean;
  /** Seconds the kernel may cache lookups, attributes and negative lookups (default one day). */
  cacheTimeoutSeconds?: number;
  /** Shown as the mount's source in /proc/mounts. */
  fsname?: string;
  /** Mount over a directory that has entries (libfuse 2 refuses without "nonempty"). */
  nonEmpty?: boolean;
}

/** One day: the image never changes while mounted, so the kernel may trust what it was told. */
const DEFAULT_CACHE_TIMEOUT_S = 86_400;
/** Bytes per read request; libfuse 2 cannot negotiate more than 128 KiB with the kernel. */
const MAX_READ = 131_072;
/** Kernel readahead window: several 128 KiB requests in flight on sequential reads. */
const MAX_READAHEAD = 1_048_576;
/** libfuse copies the option string into a 1024-byte buffer; keep the free-form part well under. */
const FSNAME_MAX = 200;

export function fuseOptions(tuning: FuseTuning = {}): string[] {
  const timeout = tuning.cacheTimeoutSeconds ?? DEFAULT_CACHE_TIMEOUT_S;
  const options = [
    'ro',
    // The kernel checks modes itself, as it does for the kernel's squashfs mount.
    'default_permissions',
    // st_ino from the image: hard links share one, and readdir reports the same numbers.
    'use_ino',
    'readdir_ino',
    // Keep the page cache across opens: file contents never change.
    'kernel_cache',
    `entry_timeout=${timeout}`,
    `attr_timeout=${timeout}`,
    `negative_timeout=${timeout}`,
    `max_read=${MAX_READ}`,
    `max_readahead=${MAX_READAHEAD}`,
    'subtype=squashfs-r2',
    `fsname=${sanitizeFsname(tuning.fsname ?? 'squashfs-r2')}`,
  ];
  if (tuning.allowOther) options.push('allow_other');
  if (tuning.autoUnmount ?? true) options.push('auto_unmount');
  if (tuning.nonEmpty) options.push('nonempty');
  return options;
}

/** Option syntax has no reliable escaping in libfuse 2: drop separators and whitespace. */
function sanitizeFsname(name: string): string {
  const clean = name.replace(/[,\s\\="']/g, '_');
  return clean.length > FSNAME_MAX ? `...${clean.slice(-FSNAME_MAX)}` : clean;
}

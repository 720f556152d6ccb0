import { isSquashfsError } from '../squashfs/errors.js';

/**
 * Linux errno values, negated as FUSE expects them in replies. Kept here (not read from
 * fuse-native) so the mapping can be imported and tested without loading the native addon.
 */
export const Errno = {
  EPERM: -1,
  ENOENT: -2,
  EIO: -5,
  EBADF: -9,
  EACCES: -13,
  ENOTDIR: -20,
  EISDIR: -21,
  EINVAL: -22,
  EROFS: -30,
  ERANGE: -34,
  ENAMETOOLONG: -36,
  ENOSYS: -38,
  ELOOP: -40,
  ENODATA: -61,
  EOPNOTSUPP: -95,
  ETIMEDOUT: -110,
  EPROTO: -71,
} as const;

/**
 * Maps a failure from the reader to a negative errno. Lookup codes keep their meaning; an image that
 * breaks the format, a failed source read and anything unexpected become EIO, so a bad block fails
 * that one read while the mount stays up.
 */
export function errnoOf(error: unknown): number {
  if (!isSquashfsError(error)) return Errno.EIO;
  switch (error.code) {
    case 'ENOENT':
      return Errno.ENOENT;
    case 'ENOTDIR':
      return Errno.ENOTDIR;
    case 'EISDIR':
      return Errno.EISDIR;
    case 'EINVAL':
      return Errno.EINVAL;
    case 'ENODATA':
      return Errno.ENODATA;
    case 'ENAMETOOLONG':
      return Errno.ENAMETOOLONG;
    case 'ELOOP':
      return Errno.ELOOP;
    case 'EUNSUPPORTED':
      return Errno.EOPNOTSUPP;
    default:
      return Errno.EIO;
  }
}

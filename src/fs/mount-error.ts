/**
 * A mount failure a person can act on; the CLI prints the message and exits non-zero. In a module of its
 * own so that what needs only the class (open-image.ts, on a mount server's path to its first GET) does
 * not load mountpoint.ts and node:fs/promises with it.
 */
export class MountError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MountError';
  }
}

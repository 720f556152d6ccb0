import { createRequire } from 'node:module';
import { Errno } from './errno.js';

/**
 * The slice of fuse-native (a CommonJS addon without types) this adapter uses. It is loaded only
 * when a mount starts, so commands that never mount do not pay for the native addon.
 */
export interface FuseSession {
  mount(callback: (error: Error | null) => void): void;
  /** Lets the event loop end once the kernel connection is gone (no fusermount: see unmountFuse). */
  release(): void;
}

export interface SessionOptions {
  /** Raw libfuse options (see fuse-options.ts). */
  options: string[];
}

type Signal = (code: number, ...values: unknown[]) => void;
// biome-ignore lint/suspicious/noExplicitAny: the addon's handlers are untyped.
type Handlers = Record<string, (...args: any[]) => void>;

interface FuseNativeClass {
  new (mountpoint: string, ops: Handlers, opts: Record<string, unknown>): FuseNativeInstance;
}
interface FuseNativeInstance {
  ops: Handlers;
  mnt: string;
  _thread: Buffer | null;
  mount(cb: (error: Error | null) => void): void;
}

let sessionClass: (new (mountpoint: string, handlers: Handlers, options: SessionOptions) => FuseSession) | undefined;

export function createSession(mountpoint: string, handlers: Handlers, options: SessionOptions): FuseSession {
  return new (loadFuse())(mountpoint, handlers, options);
}

/** Loads the addon (once; synchronous), so a caller can do it while it waits for something else. */
export function loadFuse(): NonNullable<typeof sessionClass> {
  sessionClass ??= defineSessionClass();
  return sessionClass;
}

function defineSessionClass() {
  const require = createRequire(import.meta.url);
  const Fuse = require('fuse-native') as FuseNativeClass;
  const binding = require('node-gyp-build')(require.resolve('fuse-native').replace(/[/\\]index\.js$/, '')) as {
    fuse_native_unmount(mountpoint: string, thread: Buffer): void;
  };

  /**
   * fuse-native with these corrections: raw -o options, Linux xattr size semantics (exact sizes;
   * ERANGE when the caller's buffer is too small, where fuse-native would truncate or overrun),
   * no unmount of its own (it runs `fusermount -uz`, a lazy unmount, unconditionally), no timer per
   * request (see deadlines.ts) and getattr replies encoded once per inode.
   */
  return class SquashfsFuseSession extends Fuse implements FuseSession {
    private readonly rawOptions: string[];

    constructor(mountpoint: string, handlers: Handlers, options: SessionOptions) {
      // No timer per request: the operations time out what waits themselves (deadlines.ts).
      super(mountpoint, handlers, { timeout: false });
      this.rawOptions = options.options;
    }

    _fuseOptions(): string {
      return `-o${this.rawOptions.join(',')}`;
    }

    // getattr replies with the stat already encoded (stat.ts: fuseStatOf), kept per inode, rather than
    // an object that fuse-native's getStatArray encodes afresh on every request. fgetattr goes to our
    // fgetattr (fuse-native hands it to getattr without the file handle).
    _op_getattr(signal: Signal, path: string): void {
      this.ops.getattr(path, (code: number, stat?: Uint32Array) => replyStat(signal, code, stat));
    }

    _op_fgetattr(signal: Signal, path: string, fd: number): void {
      this.ops.fgetattr(path, fd, (code: number, stat?: Uint32Array) => replyStat(signal, code, stat));
    }

    _op_getxattr(signal: Signal, path: string, name: string, valueBuf: Buffer, position: number): void {
      this.ops.getxattr(path, name, position, (code: number, value?: Buffer) => {
        if (code || !value) return signal(code || Errno.ENODATA, valueBuf.buffer);
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(Errno.ERANGE, valueBuf.buffer);
        value.copy(valueBuf);
        return signal(value.length, valueBuf.buffer);
      });
    }

    _op_listxattr(signal: Signal, path: string, listBuf: Buffer): void {
      this.ops.listxattr(path, (code: number, names?: string[]) => {
        if (code || !names) return signal(code || Errno.EIO, listBuf.buffer);
        const list = Buffer.from(names.map((n) => `${n}\0`).join(''));
        if (listBuf.length === 0) return signal(list.length, listBuf.buffer);
        if (list.length > listBuf.length) return signal(Errno.ERANGE, listBuf.buffer);
        list.copy(listBuf);
        return signal(list.length, listBuf.buffer);
      });
    }

    release(): void {
      if (this._thread) binding.fuse_native_unmount(this.mnt, this._thread);
    }
  };
}

/** Without a value the addon gets fuse-native's default (zeroed) stat. */
function replyStat(signal: Signal, code: number, stat: Uint32Array | undefined): void {
  if (code !== 0 || stat === undefined) signal(code || Errno.EIO);
  else signal(0, stat);
}

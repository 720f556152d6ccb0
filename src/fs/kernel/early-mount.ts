import { closeSync } from 'node:fs';
import type { MountOptions } from '../index.js';
import { unmountFuse } from '../unmount.js';
import { type DeviceMountOptions, type MountedDevice, mountDevice } from './device.js';

/**
 * The kernel engine's mount made before the image is open, so that mount(8) and the reader thread's
 * boot overlap the image's first round trips; requests wait in /dev/fuse until serveKernel reads
 * them. Small on purpose: it starts before the engine's other modules have loaded.
 */
export interface EarlyMount {
  device: Promise<MountedDevice>;
  /** Undoes the mount (the image could not be opened). */
  abandon(): Promise<void>;
}

export function deviceOptions(name: string, options: MountOptions): DeviceMountOptions {
  // A squashfs root is always a directory (the reader refuses an image whose root is not).
  return {
    source: name,
    rootMode: 0o040000,
    allowOther: options.allowOther,
    autoUnmount: options.autoUnmount,
  };
}

/** Starts the mount now (a reader thread started from a pinned event loop shares its CPU). */
export function mountEarly(target: string, name: string, options: MountOptions): EarlyMount {
  const device = mountDevice(target, deviceOptions(name, options));
  device.catch(() => undefined); // reported by whoever awaits it
  return {
    device,
    async abandon() {
      const d = await device.catch(() => undefined);
      if (d === undefined) return;
      d.disarm();
      d.reader.discard();
      await unmountFuse(target, { lazy: true }).catch(() => undefined);
      try {
        closeSync(d.fd);
      } catch {
        // closed already
      }
    },
  };
}

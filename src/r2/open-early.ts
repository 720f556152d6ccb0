import { type CacheOptions, resolveOptions } from './cache-options.js';
import type { OpenResult, RemoteObject } from './types.js';

/**
 * Starting an object's open (its head + tail GETs) before the chunk cache's modules are loaded: those
 * take ~20 ms to load, which then overlap the round trip instead of preceding it.
 */

/**
 * The head and tail sizes openCachedSource asks `open` for with these options. cache-options.ts has
 * no imports, so asking it costs nothing at start-up and the defaults stay in one place.
 */
export function openSpans(options: CacheOptions): OpenSpans {
  const { headBytes, tailBytes, quickTailBytes } = resolveOptions(options);
  return { headBytes, tailBytes, quickTailBytes };
}

export interface OpenSpans {
  headBytes: number;
  tailBytes: number;
  quickTailBytes: number;
}

/**
 * Sends `remote`'s open now; the object returned answers its first open() of the same sizes with that
 * open (any other open goes to `remote`). Everything else is `remote`'s.
 */
export function openNow(remote: RemoteObject, spans: OpenSpans): RemoteObject {
  let early: Promise<OpenResult> | undefined = remote.open(spans.headBytes, spans.tailBytes, spans.quickTailBytes);
  early.catch(() => undefined); // reported by the open() that takes it over, if any does
  return {
    name: remote.name,
    open(headBytes, tailBytes, quickTailBytes = 0) {
      const started = early;
      early = undefined;
      const same =
        headBytes === spans.headBytes && tailBytes === spans.tailBytes && quickTailBytes === spans.quickTailBytes;
      if (started && same) return started;
      return remote.open(headBytes, tailBytes, quickTailBytes);
    },
    fetch: (offset, length, signal) => remote.fetch(offset, length, signal),
    fetchInto: remote.fetchInto && ((offset, targets, signal) => remote.fetchInto!(offset, targets, signal)),
    stats: () => remote.stats(),
    close: () => remote.close(),
  };
}

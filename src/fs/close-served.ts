import type { SquashfsReader } from '../squashfs/types.js';
import { describeError, logger } from '../util/log.js';

const log = logger('mount');

/** Longest wait for the reader and source to close once the kernel connection is gone. */
export const CLOSE_TIMEOUT_MS = 3_000;

/**
 * Closes what a mount served (the reader, then the source through `onClosed`) once it is unmounted,
 * for both engines. Bounded: a transport stuck in a retry or a stalled GET must not keep an
 * unmounted server alive.
 */
export async function closeServed(target: string, reader: SquashfsReader, onClosed?: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((done) => {
    timer = setTimeout(() => {
      log.warn(`${target}: closing the reader and source took over ${CLOSE_TIMEOUT_MS} ms; leaving anyway`);
      done();
    }, CLOSE_TIMEOUT_MS);
    timer.unref();
  });
  const closing = (async () => {
    await reader.close().catch((e) => log.warn(`closing the reader: ${describeError(e)}`));
    await onClosed?.();
  })();
  await Promise.race([closing, timeout]);
  clearTimeout(timer);
  log.info(`${target}: unmounted`);
}

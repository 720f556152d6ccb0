import { Errno } from './errno.js';

/** fuse-native's reply callback. */
export type Reply = (code: number, ...values: unknown[]) => void;

/** A reply that answers at most once; `timedOut` says the deadline answered it (a late failure is no news). */
export type TrackedReply = Reply & { readonly timedOut: boolean };

interface Pending {
  readonly due: number;
  readonly reply: Reply;
  done: boolean;
  timedOut: boolean;
}

/**
 * Requests still waiting on their work (a stalled source read) are answered ETIMEDOUT once
 * `timeoutMs` has passed, and their late answer dropped. fuse-native would do this with a timer per
 * request, answered at once or not; here only requests that wait are tracked, and one timer sweeps
 * them, so a request times out between `timeoutMs` and `timeoutMs` + one sweep period.
 */
export class Deadlines {
  /** In insertion order, which is deadline order: every request gets the same timeout. */
  private readonly pending = new Set<Pending>();
  private timer: NodeJS.Timeout | undefined;
  private readonly sweepMs: number;
  timedOut = 0;

  constructor(private readonly timeoutMs: number) {
    this.sweepMs = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)));
  }

  get size(): number {
    return this.pending.size;
  }

  /** `reply`, answering at most once: by the caller, or with ETIMEDOUT when the deadline passes first. */
  track(reply: Reply): TrackedReply {
    const entry: Pending = { due: Date.now() + this.timeoutMs, reply, done: false, timedOut: false };
    this.pending.add(entry);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.sweepMs);
      this.timer.unref();
    }
    const once: Reply = (code, ...values) => {
      if (entry.done) return;
      entry.done = true;
      this.pending.delete(entry);
      reply(code, ...values);
    };
    return Object.defineProperty(once, 'timedOut', { get: () => entry.timedOut }) as TrackedReply;
  }

  private sweep(): void {
    const now = Date.now();
    for (const entry of this.pending) {
      if (entry.due > now) break;
      entry.done = true;
      entry.timedOut = true;
      this.pending.delete(entry);
      this.timedOut++;
      entry.reply(Errno.ETIMEDOUT);
    }
    if (this.pending.size === 0) this.stop();
  }

  /** Stops the sweep (the mount is gone); unanswered requests stay unanswered. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

import { setTimeout as sleep } from 'node:timers/promises';

/** How long and how often a remote read is retried. */
export interface RetryPolicy {
  /** Attempts in total, the first included. */
  maxAttempts: number;
  /** First backoff; each later one doubles, capped at `maxDelayMs`, with full jitter. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Wall-clock budget for all attempts of one read together. */
  totalTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 6,
  baseDelayMs: 50,
  maxDelayMs: 2_000,
  totalTimeoutMs: 30_000,
};

export function retryPolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const p = { ...DEFAULT_RETRY, ...overrides };
  for (const [k, v] of Object.entries(p)) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`retry ${k} must be a non-negative number, got ${v}`);
  }
  if (p.maxAttempts < 1) throw new RangeError('retry maxAttempts must be at least 1');
  return p;
}

/** Full-jitter exponential backoff (AWS architecture blog): uniform in [0, min(max, base * 2^n)]. */
export function backoffDelay(policy: RetryPolicy, retryIndex: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retryIndex);
  return Math.floor(random() * ceiling);
}

export interface AttemptContext {
  attempt: number;
  /** Milliseconds left of the total budget when this attempt starts. */
  remainingMs: number;
}

/**
 * Runs `attempt` until it succeeds, throws a non-retryable error, or the budget runs out. `isRetryable`
 * decides per error; `onRetry` sees every retried error (for stats and debug logs). When the budget is spent,
 * `exhausted` builds the final error from the last one.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  attempt: (ctx: AttemptContext) => Promise<T>,
  hooks: {
    isRetryable: (e: unknown) => boolean;
    onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
    exhausted: (last: unknown, attempts: number, elapsedMs: number) => Error;
    signal?: AbortSignal;
  },
): Promise<T> {
  const started = Date.now();
  for (let n = 1; ; n++) {
    const remainingMs = policy.totalTimeoutMs - (Date.now() - started);
    try {
      return await attempt({ attempt: n, remainingMs });
    } catch (e) {
      if (!hooks.isRetryable(e) || hooks.signal?.aborted) throw e;
      const elapsed = Date.now() - started;
      const delay = backoffDelay(policy, n - 1);
      if (n >= policy.maxAttempts || elapsed + delay >= policy.totalTimeoutMs) {
        throw hooks.exhausted(e, n, elapsed);
      }
      hooks.onRetry?.(e, n, delay);
      if (delay > 0) await sleep(delay, undefined, { signal: hooks.signal }).catch(() => undefined);
      if (hooks.signal?.aborted) throw e;
    }
  }
}

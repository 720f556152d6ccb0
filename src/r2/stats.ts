import type { TransportStats } from './types.js';

/** Upper bounds (ms) of the latency histogram buckets; the last bucket catches everything slower. */
export const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, Infinity] as const;

/** Mutable counters behind `RemoteObject.stats()`. */
export class TransportCounters {
  requests = 0;
  bytes = 0;
  retries = 0;
  failures = 0;
  inFlight = 0;
  private readonly latency = new Array<number>(LATENCY_BUCKETS_MS.length).fill(0);

  recordLatency(ms: number): void {
    const i = LATENCY_BUCKETS_MS.findIndex((bound) => ms <= bound);
    this.latency[i]!++;
  }

  snapshot(): TransportStats {
    const latencyMs: Record<string, number> = {};
    LATENCY_BUCKETS_MS.forEach((bound, i) => {
      latencyMs[String(bound)] = this.latency[i]!;
    });
    return {
      requests: this.requests,
      bytes: this.bytes,
      retries: this.retries,
      failures: this.failures,
      inFlight: this.inFlight,
      latencyMs,
    };
  }
}

/** Approximate latency quantile (bucket upper bound) from a histogram snapshot, for summaries. */
export function latencyQuantile(latencyMs: Record<string, number>, q: number): number | undefined {
  const entries = Object.entries(latencyMs).map(([k, v]) => [Number(k), v] as const);
  const total = entries.reduce((s, [, v]) => s + v, 0);
  if (total === 0) return undefined;
  let seen = 0;
  for (const [bound, count] of entries) {
    seen += count;
    if (seen >= q * total) return bound;
  }
  return Infinity;
}

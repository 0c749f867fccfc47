/** The contract's retry schedule for calls that carry outcomes (README, "When the network fails"). */
export const RetrySchedule = {
  /** Attempts made at once after the first failure: a single dropped connection costs nothing. */
  immediateRetries: 2,
  /** The backoff's first ceiling; step n waits a random time in [0, base × 2ⁿ). */
  baseDelayMs: 100,
  /** No single wait is longer than this (also the offline probe's longest interval). */
  maxDelayMs: 5_000,
  /** After this long since the first failure, the outcome goes to the journal and the worker is offline. */
  giveUpAfterMs: 10_000,
} as const;

/** The longest wait of backoff step n (0-based): 100 ms × 2ⁿ, at most 5 s. */
export function backoffCeiling(step: number, schedule: { baseDelayMs: number; maxDelayMs: number } = RetrySchedule): number {
  const exponent = Math.max(0, Math.min(step, 30));
  return Math.min(schedule.maxDelayMs, schedule.baseDelayMs * 2 ** exponent);
}

/** Exponential backoff with full jitter: a uniformly random wait in [0, ceiling(step)). */
export function backoffDelay(
  step: number,
  random: () => number = Math.random,
  schedule: { baseDelayMs: number; maxDelayMs: number } = RetrySchedule,
): number {
  return Math.floor(random() * backoffCeiling(step, schedule));
}

/** Waits `ms`, or less when `signal` aborts first (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

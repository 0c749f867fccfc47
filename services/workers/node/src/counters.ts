/** README, "Connection state": the counters every worker library keeps. */
export interface WorkerCounters {
  /** Attempts of outcome calls repeated after a transient failure (immediate retries and backoff retries). */
  retries: number;
  /** Outcomes written to the offline journal. */
  journaled: number;
  /** Journaled outcomes delivered by a sync (accepted or refused). */
  replayed: number;
  /** Final refusals of outcomes (stale fencing token, task no longer running, …): logged once each. */
  refused: number;
  /** Completions the queue accepted. */
  completed: number;
  /** Failures the queue accepted. */
  failed: number;
  /** Tasks given back without an outcome (worker stopping). */
  released: number;
  /** Tasks whose outcome was not reported because the lease was lost or the task cancelled. */
  abandoned: number;
}

export function newCounters(): WorkerCounters {
  return { retries: 0, journaled: 0, replayed: 0, refused: 0, completed: 0, failed: 0, released: 0, abandoned: 0 };
}

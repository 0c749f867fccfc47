import { RetrySchedule, backoffDelay, sleep } from "./backoff";
import { ConnectionTracker } from "./connection";
import { WorkerCounters } from "./counters";
import { codeName, describe, isTransient } from "./errors";
import { Journal, JournalEntry, JournalError, JournalProgress } from "./journal";

/** A completion on its way to CompleteTasks. `result` is JSON text ("" = no result). */
export interface Completion {
  taskId: string;
  fencingToken: string;
  result: string;
}

/** A failure on its way to FailTask. */
export interface Failure {
  taskId: string;
  fencingToken: string;
  error: JournalError;
}

export interface ProgressReport {
  taskId: string;
  fencingToken: string;
  progress: JournalProgress;
}

/** The answer to one completion of a CompleteTasks batch. */
export interface CompletionAnswer {
  taskId: string;
  accepted: boolean;
  /** gRPC status code of a refusal. */
  code: number;
  reason: string;
  message: string;
}

/** The calls the outbox makes; each one is one gRPC call that resolves or rejects with the call's error. */
export interface OutboxApi {
  completeTasks(completions: Completion[]): Promise<CompletionAnswer[]>;
  failTask(failure: Failure): Promise<void>;
  reportProgress(report: ProgressReport): Promise<void>;
}

/** How one outcome ended up. */
export type Settlement = "delivered" | "refused" | "journaled";

export type AttemptResult<T> =
  | { ok: true; value: T }
  | { ok: false; final: true; error: unknown }
  | { ok: false; final: false; error: unknown };

export interface OutboxOptions {
  api: OutboxApi;
  tracker: ConnectionTracker;
  journal: Journal;
  counters: WorkerCounters;
  log: (level: "info" | "warn" | "error", message: string) => void;
  /** The task's latest progress not yet delivered, journaled before its outcome. */
  latestProgress?: (taskId: string) => JournalProgress | undefined;
  /** An outcome (live or from the journal) is settled: delivered, refused, or (live only) journaled. */
  onSettled?: (taskId: string, fencingToken: string, how: Settlement, fromJournal: boolean) => void;
  schedule?: { immediateRetries: number; baseDelayMs: number; maxDelayMs: number; giveUpAfterMs: number };
  random?: () => number;
  now?: () => number;
  maxBatch?: number;
}

/**
 * Carries outcomes to the queue without ever dropping one on a transient failure (README, "When the network
 * fails"): a call is tried, then retried twice at once, then with exponential backoff and full jitter until 10 s have
 * passed since its first failure; then the outcome (with the task's latest undelivered progress) is appended to the
 * journal with fsync and the worker is offline. While offline or syncing, outcomes go straight to the journal (they
 * stay in order behind the ones already there). `sync` replays the journal in order once the gateway answers again.
 * A final refusal is logged once, counted, and never retried.
 */
export class Outbox {
  private stopping = false;
  private readonly stopSignal = new AbortController();
  private syncing: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly o: OutboxOptions) {}

  private get schedule() {
    return this.o.schedule ?? RetrySchedule;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /**
   * From now on an outcome whose call fails transiently goes to the journal at once (no backoff): the worker is
   * stopping. Waits for the deliveries under way.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopSignal.abort();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    if (this.syncing) await this.syncing;
  }

  /** Delivers completions as one CompleteTasks (the batcher calls this with what finished together). */
  deliverCompletions(completions: Completion[]): Promise<Map<string, Settlement>> {
    return this.track(this.completionsNow(completions));
  }

  /** Delivers one failure (FailTask). */
  deliverFailure(failure: Failure): Promise<Settlement> {
    return this.track(this.failureNow(failure));
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work)).catch(() => undefined);
    return work;
  }

  private async completionsNow(completions: Completion[]): Promise<Map<string, Settlement>> {
    const settled = new Map<string, Settlement>();
    if (!this.o.tracker.canSend) {
      for (const c of completions) settled.set(c.taskId, this.journalCompletion(c));
      return settled;
    }
    const attempt = await this.attempt("CompleteTasks", () => this.o.api.completeTasks(completions), true, true);
    if (!attempt.ok && !attempt.final) {
      for (const c of completions) settled.set(c.taskId, this.journalCompletion(c));
      return settled;
    }
    if (!attempt.ok) {
      for (const c of completions) settled.set(c.taskId, this.refuse(c.taskId, c.fencingToken, "completion", describe(attempt.error), false));
      return settled;
    }
    const answers = new Map(attempt.value.map((a) => [a.taskId, a]));
    const again: Completion[] = [];
    for (const c of completions) {
      const answer = answers.get(c.taskId);
      if (answer?.accepted) {
        this.o.counters.completed += 1;
        this.o.log("info", `task ${c.taskId} completed`);
        settled.set(c.taskId, this.settle(c.taskId, c.fencingToken, "delivered", false));
      } else if (answer && isTransient({ code: answer.code, details: answer.message })) {
        again.push(c);
      } else {
        const why = answer ? `${codeName(answer.code)}: ${answer.message}${answer.reason ? ` [${answer.reason}]` : ""}` : "no answer in the batch";
        settled.set(c.taskId, this.refuse(c.taskId, c.fencingToken, "completion", why, false));
      }
    }
    if (again.length > 0) {
      for (const [taskId, how] of await this.completionsNow(again)) settled.set(taskId, how);
    }
    return settled;
  }

  private async failureNow(failure: Failure): Promise<Settlement> {
    if (!this.o.tracker.canSend) return this.journalFailure(failure);
    const attempt = await this.attempt("FailTask", () => this.o.api.failTask(failure), true, true);
    if (attempt.ok) {
      this.o.counters.failed += 1;
      this.o.log("info", `task ${failure.taskId} failed: ${failure.error.code}${failure.error.retryable ? " (retryable)" : ""}`);
      return this.settle(failure.taskId, failure.fencingToken, "delivered", false);
    }
    if (attempt.final) return this.refuse(failure.taskId, failure.fencingToken, "failure", describe(attempt.error), false);
    return this.journalFailure(failure);
  }

  /**
   * One call under the contract's schedule: the call, 2 immediate retries, then (with `backoff`) full-jitter waits
   * until `giveUpAfterMs` since the first failure. Feeds the connection tracker; `countRetries` counts the repeats.
   * Gives up early when another call already took the worker offline, or when the worker is stopping.
   */
  async attempt<T>(what: string, call: () => Promise<T>, backoff: boolean, countRetries: boolean): Promise<AttemptResult<T>> {
    const schedule = this.schedule;
    let failures = 0;
    let step = 0;
    let firstFailureAt: number | undefined;
    for (;;) {
      const attemptStarted = this.now();
      try {
        const value = await call();
        this.o.tracker.succeeded(`${what} succeeded`);
        return { ok: true, value };
      } catch (error) {
        if (!isTransient(error)) {
          this.o.tracker.succeeded(`${what} answered`);
          return { ok: false, final: true, error };
        }
        failures += 1;
        firstFailureAt ??= attemptStarted; // a call that failed by its deadline failed from its start
        const elapsed = this.now() - firstFailureAt;
        if (failures <= schedule.immediateRetries && elapsed < schedule.giveUpAfterMs) {
          // at once, and unseen by the connection state: a single dropped connection costs nothing (calls that
          // fail slowly — deadlines in a black-holed network — still give up once the window has passed)
          if (countRetries) this.o.counters.retries += 1;
          continue;
        }
        this.o.tracker.failed(`${describe(error)} (${what})`);
        if (!backoff) return { ok: false, final: false, error };
        if (this.stopping || this.o.tracker.state === "offline" || elapsed >= schedule.giveUpAfterMs) {
          this.o.tracker.giveUp(`${describe(error)} (${what}, ${this.stopping ? "worker stopping" : `retried for ${(elapsed / 1000).toFixed(1)} s`})`);
          return { ok: false, final: false, error };
        }
        const wait = Math.min(backoffDelay(step, this.o.random, schedule), schedule.giveUpAfterMs - elapsed);
        step += 1;
        await sleep(wait, this.stopSignal.signal);
        if (countRetries) this.o.counters.retries += 1;
      }
    }
  }

  private journalCompletion(c: Completion): Settlement {
    let result: unknown = null;
    if (c.result !== "") {
      try {
        result = JSON.parse(c.result);
      } catch {
        result = c.result; // not JSON: kept as a string (sent back as its JSON text)
      }
    }
    return this.journalOutcome(c.taskId, c.fencingToken, () =>
      this.o.journal.append({ kind: "complete", task_id: c.taskId, fencing_token: c.fencingToken, result }),
    );
  }

  private journalFailure(f: Failure): Settlement {
    return this.journalOutcome(f.taskId, f.fencingToken, () =>
      this.o.journal.append({ kind: "fail", task_id: f.taskId, fencing_token: f.fencingToken, error: f.error }),
    );
  }

  private journalOutcome(taskId: string, fencingToken: string, append: () => JournalEntry): Settlement {
    const progress = this.o.latestProgress?.(taskId);
    try {
      if (progress) this.o.journal.append({ kind: "progress", task_id: taskId, fencing_token: fencingToken, progress });
      const entry = append();
      this.o.counters.journaled += 1;
      this.o.log("info", `task ${taskId}: ${entry.kind === "complete" ? "completion" : "failure"} journaled (seq ${entry.seq}) until the gateway answers again`);
    } catch (error) {
      // The disk refused: nothing else can keep the outcome. Say so loudly; the lease will run out and the task be retried.
      this.o.log("error", `task ${taskId}: outcome could not be journaled (${(error as Error).message}); it is lost and the task will run again`);
    }
    return this.settle(taskId, fencingToken, "journaled", false);
  }

  private refuse(taskId: string, fencingToken: string, what: string, why: string, fromJournal: boolean): Settlement {
    this.o.counters.refused += 1;
    this.o.log("warn", `task ${taskId}: ${what}${fromJournal ? " from the journal" : ""} refused (token ${fencingToken}), dropped: ${why}`);
    return this.settle(taskId, fencingToken, "refused", fromJournal);
  }

  private settle(taskId: string, fencingToken: string, how: Settlement, fromJournal: boolean): Settlement {
    this.o.onSettled?.(taskId, fencingToken, how, fromJournal);
    return how;
  }

  /**
   * Replays the journal in order (README, "sync"): consecutive completions as one CompleteTasks (at most 100,
   * each task once; the progress journaled among them goes first, so each task's progress still precedes its
   * outcome), failures as FailTask, progress as ReportProgress. An answer removes the entry (a final refusal
   * with a log line); a transient failure (after the 2 immediate retries) sends the worker back offline and keeps the
   * rest. The file is rewritten with what is left. Runs until the journal is empty (→ connected), also picking up
   * outcomes journaled meanwhile. Concurrent calls share one run.
   */
  sync(): Promise<void> {
    this.syncing ??= this.syncNow().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async syncNow(): Promise<void> {
    const tracker = this.o.tracker;
    while (tracker.state === "syncing") {
      const entries = this.o.journal.entries;
      if (entries.length === 0) {
        tracker.synced("journal empty");
        return;
      }
      this.o.log("info", `sync: replaying ${entries.length} journal entr${entries.length === 1 ? "y" : "ies"}`);
      const done: number[] = [];
      let i = 0;
      let interrupted = false;
      while (i < entries.length && !interrupted) {
        const entry = entries[i];
        if (entry.kind === "fail") {
          i += 1;
          interrupted = !(await this.replayOne(entry, done));
          continue;
        }
        // A window of completions and the progress journaled with them: the progress first (each task's progress
        // still comes before its own outcome), then the completions as one CompleteTasks (at most 100, each task once).
        const progress: Extract<JournalEntry, { kind: "progress" }>[] = [];
        const group: Extract<JournalEntry, { kind: "complete" }>[] = [];
        const ids = new Set<string>();
        while (i < entries.length && group.length < (this.o.maxBatch ?? 100)) {
          const next = entries[i];
          if (next.kind === "fail" || ids.has(next.task_id)) break;
          if (next.kind === "progress") progress.push(next);
          else {
            group.push(next);
            ids.add(next.task_id);
          }
          i += 1;
        }
        for (const p of progress) {
          if (!(await this.replayOne(p, done))) {
            interrupted = true;
            break;
          }
        }
        if (!interrupted && group.length > 0) interrupted = !(await this.replayCompletions(group, done));
      }
      this.o.journal.remove(done);
      if (this.stopping) return;
    }
  }

  private async replayCompletions(group: Extract<JournalEntry, { kind: "complete" }>[], done: number[]): Promise<boolean> {
    const completions: Completion[] = group.map((e) => ({
      taskId: e.task_id,
      fencingToken: e.fencing_token,
      result: e.result === null || e.result === undefined ? "" : JSON.stringify(e.result),
    }));
    const attempt = await this.attempt("CompleteTasks (sync)", () => this.o.api.completeTasks(completions), false, true);
    if (!attempt.ok && !attempt.final) {
      this.o.tracker.failed(`${describe(attempt.error)} (sync)`);
      return false;
    }
    const answers = attempt.ok ? new Map(attempt.value.map((a) => [a.taskId, a])) : undefined;
    let keepGoing = true;
    for (const e of group) {
      const answer = answers?.get(e.task_id);
      if (answer?.accepted) {
        this.o.counters.completed += 1;
        this.o.counters.replayed += 1;
        this.o.log("info", `task ${e.task_id}: journaled completion delivered (seq ${e.seq})`);
        this.settle(e.task_id, e.fencing_token, "delivered", true);
        done.push(e.seq);
      } else if (answer && isTransient({ code: answer.code, details: answer.message })) {
        keepGoing = false; // stays in the journal
      } else {
        const why = !attempt.ok ? describe(attempt.error)
          : answer ? `${codeName(answer.code)}: ${answer.message}${answer.reason ? ` [${answer.reason}]` : ""}` : "no answer in the batch";
        this.o.counters.replayed += 1;
        this.refuse(e.task_id, e.fencing_token, "completion", why, true);
        done.push(e.seq);
      }
    }
    if (!keepGoing) this.o.tracker.failed("sync: a completion was refused for now");
    return keepGoing;
  }

  private async replayOne(entry: JournalEntry, done: number[]): Promise<boolean> {
    const what = entry.kind === "fail" ? "FailTask (sync)" : "ReportProgress (sync)";
    const attempt = await this.attempt(
      what,
      () =>
        entry.kind === "fail"
          ? this.o.api.failTask({ taskId: entry.task_id, fencingToken: entry.fencing_token, error: entry.error })
          : entry.kind === "progress"
            ? this.o.api.reportProgress({ taskId: entry.task_id, fencingToken: entry.fencing_token, progress: entry.progress })
            : Promise.resolve(),
      false,
      true,
    );
    if (!attempt.ok && !attempt.final) {
      this.o.tracker.failed(`${describe(attempt.error)} (sync)`);
      return false;
    }
    done.push(entry.seq);
    if (entry.kind === "progress") {
      if (!attempt.ok) this.o.log("info", `task ${entry.task_id}: journaled progress dropped: ${describe(attempt.error)}`);
      return true;
    }
    this.o.counters.replayed += 1;
    if (attempt.ok) {
      this.o.counters.failed += 1;
      this.o.log("info", `task ${entry.task_id}: journaled failure delivered (seq ${entry.seq})`);
      this.settle(entry.task_id, entry.fencing_token, "delivered", true);
    } else {
      this.refuse(entry.task_id, entry.fencing_token, "failure", describe(attempt.error), true);
    }
    return true;
  }
}

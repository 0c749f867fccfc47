import type { Task } from "./generated/lifeline/queue/v1/queue";

/** What a handler gets: the leased task, its parsed payload, progress reporting and cancellation. */
export class TaskContext {
  /** The task's payload, parsed from JSON (`{}` when empty; the text itself if it is not JSON). */
  readonly payload: unknown;

  constructor(
    /** The task as leased (already started: `running`). */
    readonly task: Task,
    /** Aborted when the task is cancelled, its lease is lost, or the worker is stopping; `signal.reason` says which. */
    readonly signal: AbortSignal,
    private readonly progress: (percent: number, message: string) => Promise<void>,
  ) {
    this.payload = parsePayload(task.payload);
  }

  get taskId(): string {
    return this.task.id;
  }

  get taskType(): string {
    return this.task.type;
  }

  /** The lease's fencing token (an int64, as a decimal string). */
  get fencingToken(): string {
    return this.task.fencingToken;
  }

  /** 1 for the first attempt, 2 for the first retry, … */
  get attempt(): number {
    return this.task.retryCount + 1;
  }

  /** The workflow the task belongs to, if any. */
  get workflowId(): string | undefined {
    return this.task.workflowId || undefined;
  }

  /** True once the handler should give up (see `signal`). */
  get cancelled(): boolean {
    return this.signal.aborted;
  }

  /** Throws the signal's reason when the handler should give up. */
  throwIfCancelled(): void {
    this.signal.throwIfAborted();
  }

  /**
   * Records progress (0–100) and extends the lease. Never throws: while the gateway cannot be reached the progress is
   * kept (and journaled with the outcome if it comes to that); if the lease is gone, `signal` is aborted.
   */
  reportProgress(percent: number, message = ""): Promise<void> {
    return this.progress(percent, message);
  }
}

function parsePayload(text: string): unknown {
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON (the queue only accepts JSON objects, so this does not happen through it)
  }
}

import { ClientDuplexStream, ServiceError, status as Status } from "@grpc/grpc-js";
import { StreamCallError, describe, reasonOf } from "./errors";
import {
  CompleteTaskRequest,
  DispatchAck,
  DispatchOpen,
  DispatchRequest,
  DispatchResponse,
  ExtendLeaseRequest,
  FailTaskRequest,
  ReleaseTaskRequest,
  ReportProgressRequest,
  Task,
} from "./generated/lifeline/queue/v1/queue";

/** The requests a worker sends on a dispatch stream, each answered by an ack. */
export interface DispatchRequests {
  complete: CompleteTaskRequest;
  fail: FailTaskRequest;
  progress: ReportProgressRequest;
  extendLease: ExtendLeaseRequest;
  release: ReleaseTaskRequest;
}

export type DispatchField = keyof DispatchRequests;

/** DispatchOpen.slots and DispatchCapacity.slots: at most 500. */
export const MAX_STREAM_SLOTS = 500;

/** What a dispatch stream needs from its worker. */
export interface DispatchHost {
  /** The slot count the stream should have now (0 pauses it). */
  slotsFor(stream: DispatchStream): number;
  /** A task the queue pushed (already counted in `stream.pushed`). */
  onTask(stream: DispatchStream, task: Task): void;
  /** The queue sent something on the stream: the gateway answers. */
  onMessage(): void;
  /** The stream ended; `error` is undefined when the queue ended it with OK. */
  onEnd(stream: DispatchStream, error: ServiceError | undefined): void;
  log(level: "info" | "warn", message: string): void;
}

interface Waiting {
  field: DispatchField;
  taskId: string;
  resolve: (ack: DispatchAck) => void;
  reject: (error: StreamCallError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * One QueueService.Dispatch call: the queue pushes tasks (leased and started) up to the stream's slots; the worker sends
 * complete, fail, progress, extend_lease and release on it, each answered by an ack with its request id (`request`
 * resolves with the ack of an accepted request and rejects with a {@link StreamCallError} otherwise).
 *
 * Slots: the queue counts a pushed task against the stream until an outcome or a release naming it arrives on the
 * stream, accepted or not. The worker's host says what the count should be (`slotsFor`); a smaller count goes out before
 * the outcome that would free a slot, so the queue never pushes more than the worker takes.
 *
 * Requests waiting when the stream ends are rejected as UNAVAILABLE (transient): the caller sends them again, on the
 * next stream or with the unary call — the queue takes a repeat with the same fencing token without doing anything
 * twice. The one exception: a stream ended with INVALID_ARGUMENT (bad input) — the queue answers everything before the
 * message it refuses, so the first request left unanswered is that message, rejected for good as its unary call would
 * be. A request left unanswered for `timeoutMs` makes the stream be given up (and another one opened).
 */
export class DispatchStream {
  /** Tasks pushed on this stream with no outcome or release sent on it yet. */
  readonly pushed = new Set<string>();
  /** The slot count the queue was last told. */
  slots = 0;
  ended = false;
  /** How it ended (undefined: the queue ended it with OK). */
  error: ServiceError | undefined;
  /** The queue sent something on it. */
  answered = false;
  halfClosed = false;
  openedAt = 0;
  /** Resolves once the stream has ended. */
  readonly done: Promise<void>;

  private call: ClientDuplexStream<DispatchRequest, DispatchResponse> | undefined;
  private nextRequest = 0;
  private readonly waiting = new Map<number, Waiting>();
  private markDone!: () => void;

  constructor(
    private readonly host: DispatchHost,
    private readonly openCall: () => ClientDuplexStream<DispatchRequest, DispatchResponse>,
    private readonly timeoutMs: number,
  ) {
    this.done = new Promise((resolve) => (this.markDone = resolve));
  }

  /** Requests may go on it: open (or opening), not ended, not closing. */
  get usable(): boolean {
    return !this.ended && !this.halfClosed;
  }

  open(opening: Omit<DispatchOpen, "slots">, slots: number): void {
    this.slots = slots;
    this.openedAt = Date.now();
    const call = this.openCall();
    this.call = call;
    let failure: ServiceError | undefined;
    call.on("data", (message: DispatchResponse) => this.receive(message));
    call.on("error", (error: ServiceError) => (failure = error));
    call.on("status", (status: { code: number }) => this.end(status.code === Status.OK ? undefined : failure ?? (status as ServiceError)));
    call.write(DispatchRequest.fromPartial({ open: { ...opening, slots } }));
  }

  /** Sends one request; rejects at once (UNAVAILABLE) when the stream cannot take it any more. */
  request<K extends DispatchField>(field: K, message: DispatchRequests[K], taskId: string): Promise<DispatchAck> {
    if (!this.usable || !this.call) {
      return Promise.reject(new StreamCallError(Status.UNAVAILABLE, "the dispatch stream is closed"));
    }
    const id = ++this.nextRequest;
    const answer = new Promise<DispatchAck>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.waiting.delete(id)) return;
        reject(new StreamCallError(Status.DEADLINE_EXCEEDED, `the dispatch stream did not answer the ${field} of task ${taskId} in time`));
        this.abandon(`no answer to a ${field} of task ${taskId} in time`);
      }, this.timeoutMs);
      this.waiting.set(id, { field, taskId, resolve, reject, timer });
    });
    if ((field === "complete" || field === "fail" || field === "release") && this.pushed.delete(taskId)) {
      this.updateCapacity(); // a smaller count first: the outcome frees the slot on arrival
    }
    const request: DispatchRequest = { ...DispatchRequest.fromPartial({}), requestId: String(id), [field]: message };
    this.call.write(request);
    return answer;
  }

  /** Tells the queue the slot count the worker wants now, if it changed. */
  updateCapacity(): void {
    if (!this.usable || !this.call) return;
    const target = Math.max(0, Math.min(MAX_STREAM_SLOTS, this.host.slotsFor(this)));
    if (target === this.slots) return;
    this.slots = target;
    this.call.write(DispatchRequest.fromPartial({ capacity: { slots: target } }));
  }

  /** Gives the stream up at once (cancels the call); its waiting requests are rejected as UNAVAILABLE. */
  abandon(reason: string): void {
    if (this.ended || !this.call) return;
    this.host.log("info", `dispatch stream given up: ${reason}`);
    this.call.cancel();
  }

  /** Half-closes the stream (nothing more is sent) and waits up to `timeoutMs` for the queue to end it. */
  async close(timeoutMs: number): Promise<void> {
    if (!this.call || this.ended) return;
    this.halfClosed = true;
    this.call.end();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    if (!this.ended) {
      this.call.cancel();
      this.end(undefined);
    }
  }

  private receive(message: DispatchResponse): void {
    this.answered = true;
    if (message.ack) {
      const id = Number(message.ack.requestId);
      const waiting = this.waiting.get(id);
      if (waiting) {
        this.waiting.delete(id);
        clearTimeout(waiting.timer);
        if (message.ack.accepted) waiting.resolve(message.ack);
        else waiting.reject(new StreamCallError(message.ack.code || Status.UNKNOWN, message.ack.message, message.ack.reason));
      }
    } else if (message.task) {
      this.pushed.add(message.task.id);
      this.host.onTask(this, message.task);
    }
    this.host.onMessage();
  }

  private end(error: ServiceError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    const waiting = [...this.waiting.entries()].sort(([a], [b]) => a - b).map(([, w]) => w);
    this.waiting.clear();
    const why = error ? describe(error) : "ended by the queue";
    if (error?.code === Status.INVALID_ARGUMENT && waiting.length > 0) {
      const bad = waiting.shift()!;
      clearTimeout(bad.timer);
      bad.reject(new StreamCallError(Status.INVALID_ARGUMENT, error.details ?? error.message, reasonOf(error)));
    }
    for (const w of waiting) {
      clearTimeout(w.timer);
      w.reject(new StreamCallError(Status.UNAVAILABLE, `the dispatch stream ended before the queue answered (${why})`));
    }
    this.markDone();
    this.host.onEnd(this, error);
  }
}

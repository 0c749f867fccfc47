import { EventEmitter } from "node:events";
import { RetrySchedule } from "./backoff";

/** README, "Connection state": connected → retrying → offline → syncing → connected. */
export type ConnectionState = "connected" | "retrying" | "offline" | "syncing";

export interface StateChange {
  from: ConnectionState;
  to: ConnectionState;
  /** Why: the error that caused it, or what succeeded. */
  reason: string;
}

/**
 * The worker's view of its connection to the gateway, fed by the outcome of every call:
 *
 * - `connected`: calls succeed. The first transient failure → `retrying`.
 * - `retrying`: a success → `connected`; a failure 10 s or more after the first one → `offline` (and an outcome
 *   whose own retries ran out sends it there at once: `giveUp`).
 * - `offline`: the worker leases nothing and journals outcomes; the first success (a probe) → `syncing`.
 * - `syncing`: the journal is replayed; a transient failure → `offline`, an empty journal → `connected` (`synced`).
 *
 * A final refusal is a success here: the gateway answered. Every transition is one log line and one
 * `stateChange` event.
 */
export class ConnectionTracker extends EventEmitter {
  private current: ConnectionState;
  private firstFailureAt: number | undefined;

  constructor(
    private readonly options: {
      now?: () => number;
      log?: (line: string) => void;
      giveUpAfterMs?: number;
      initial?: ConnectionState;
    } = {},
  ) {
    super();
    this.current = options.initial ?? "connected";
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** Outcomes may be sent directly (not journaled) in these states. */
  get canSend(): boolean {
    return this.current === "connected" || this.current === "retrying";
  }

  /** A call reached the gateway (answered, or refused for good). */
  succeeded(what = "a call succeeded"): void {
    this.firstFailureAt = undefined;
    if (this.current === "retrying") this.move("connected", what);
    else if (this.current === "offline") this.move("syncing", what);
  }

  /** A call failed transiently. */
  failed(reason: string): void {
    const now = this.now();
    switch (this.current) {
      case "connected":
        this.firstFailureAt = now;
        this.move("retrying", reason);
        break;
      case "retrying":
        this.firstFailureAt ??= now;
        if (now - this.firstFailureAt >= (this.options.giveUpAfterMs ?? RetrySchedule.giveUpAfterMs)) this.move("offline", reason);
        break;
      case "syncing":
        this.move("offline", reason);
        break;
      case "offline":
        break;
    }
  }

  /** An outcome's retries ran out (or the worker is stopping): offline now. */
  giveUp(reason: string): void {
    if (this.current !== "offline") this.move("offline", reason);
  }

  /** Sets the state without a transition (no log line, no event): a restart resuming where the last process left off. */
  restore(state: ConnectionState): void {
    this.current = state;
    this.firstFailureAt = undefined;
  }

  /** The journal must be replayed before leasing (a restart with a journal): syncing. */
  startSync(reason: string): void {
    if (this.current !== "syncing") this.move("syncing", reason);
  }

  /** The replay emptied the journal. */
  synced(reason = "journal empty"): void {
    if (this.current === "syncing") {
      this.firstFailureAt = undefined;
      this.move("connected", reason);
    }
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private move(to: ConnectionState, reason: string): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.options.log?.(`connection ${from} → ${to}: ${reason}`);
    const change: StateChange = { from, to, reason };
    this.emit("stateChange", change);
  }

  /** Resolves once the state is one of `states` (at once if it is already), or when `signal` aborts. */
  waitFor(states: ConnectionState[], signal?: AbortSignal): Promise<void> {
    if (states.includes(this.current) || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.off("stateChange", onChange);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const onChange = (change: StateChange) => {
        if (states.includes(change.to)) done();
      };
      this.on("stateChange", onChange);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

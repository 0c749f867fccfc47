import { EventEmitter } from "node:events";
import * as os from "node:os";
import {
  CallOptions,
  ChannelCredentials,
  ChannelOptions,
  ClientDuplexStream,
  ClientUnaryCall,
  Metadata,
  ServiceError,
  credentials as grpcCredentials,
  status as Status,
} from "@grpc/grpc-js";
import { RetrySchedule, backoffDelay, sleep } from "./backoff";
import { Batcher } from "./batcher";
import { ConnectionState, ConnectionTracker, StateChange } from "./connection";
import { TaskContext } from "./context";
import { WorkerCounters, newCounters } from "./counters";
import { parseTarget } from "./credentials";
import { DispatchField, DispatchRequests, DispatchStream, MAX_STREAM_SLOTS } from "./dispatch";
import { StreamCallError, TaskFailed, describe, isCancelled, isTransient, reasonOf } from "./errors";
import { Duration } from "./generated/google/protobuf/duration";
import { Severity } from "./generated/lifeline/common/v1/common";
import {
  CompleteTaskRequest,
  CompleteTasksRequest,
  DispatchAck,
  ExtendLeaseRequest,
  FailTaskRequest,
  LeaseTasksRequest,
  QueueServiceClient,
  ReleaseTaskRequest,
  ReportProgressRequest,
  Task,
} from "./generated/lifeline/queue/v1/queue";
import {
  DeregisterWorkerRequest,
  HeartbeatRequest,
  HeartbeatResponse,
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
  RegisterWorkerRequest,
  RegistryServiceClient,
  WorkerCommand,
  WorkerStatus,
  WorkerType,
} from "./generated/lifeline/registry/v1/registry";
import { Journal, JournalError, JournalProgress } from "./journal";
import { Completion, CompletionAnswer, Outbox, Settlement } from "./outbox";

/** A handler runs one task and returns its result (any JSON-serialisable value; `undefined`: no result). */
export type TaskHandler = (context: TaskContext) => unknown | Promise<unknown>;

export type LogLevel = "info" | "warn" | "error";
export type Logger = (level: LogLevel, message: string) => void;

export interface LifelineWorkerOptions {
  /** The gateway: `http://host:port`, `https://host:port` or `host:port`. */
  target: string;
  /** Sent as `authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Task type → handler; the types are the worker's capabilities. */
  handlers: Record<string, TaskHandler>;
  /** Unique within the tenant; also names the journal file. Default `node-<host>-<pid>`. */
  name?: string;
  /** Tasks run at once. Default 4. */
  maxTasks?: number;
  /** Lease duration, extended while a handler runs. Default 30. */
  leaseSeconds?: number;
  /** LeaseTasks long poll (at most 30). Default 20. */
  pollSeconds?: number;
  /** Where `<name>.journal` lives. Default `.lifeline-journal` under the working directory. */
  journalDir?: string;
  /** Lease at most this many tasks, then stop once they have all ended and the journal is empty. */
  once?: number;
  /** How long stopping waits for running handlers. Default 20 000. */
  shutdownGraceMs?: number;
  /** Deadline of one unary call (a long poll gets its wait on top). Default 5 000. */
  callTimeoutMs?: number;
  /** Another gateway address for registry calls (rarely needed). */
  registryTarget?: string;
  /** Reported in the registration's metadata. */
  version?: string;
  /** Called on every connection state change (also emitted as the `stateChange` event). */
  onStateChange?: (change: StateChange) => void;
  /** Where log lines go. Default: stderr, one line each. */
  log?: Logger;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
  /**
   * Take tasks from the queue's dispatch stream (QueueService.Dispatch) and send outcomes, progress, lease extensions and
   * releases on it. Default true; false leases with LeaseTasks long polls and unary calls only. A queue without the
   * stream (UNIMPLEMENTED) makes the worker fall back to those by itself.
   */
  dispatchStream?: boolean;
  /**
   * The retry schedule (README, "When the network fails"). Leave it alone: the contract fixes it; tests shorten it to
   * keep an outage short.
   */
  retrySchedule?: Partial<RetryScheduleOptions>;
}

export type RetryScheduleOptions = { -readonly [K in keyof typeof RetrySchedule]: number };

/** Why a handler's signal was aborted (its `signal.reason`). */
export class TaskCancelled extends Error {
  constructor(
    message: string,
    /** `cancelled`: the task was cancelled; `lease-lost`: the lease is someone else's now; `stopping`: the worker is stopping. */
    readonly why: "cancelled" | "lease-lost" | "stopping",
  ) {
    super(message);
    this.name = "TaskCancelled";
  }
}

type Phase = "running" | "reporting" | "stopped";

interface Held {
  task: Task;
  context: TaskContext;
  controller: AbortController;
  phase: Phase;
  lastExtendedAt: number;
  lost: boolean;
  progress?: JournalProgress & { delivered: boolean };
  done: Promise<void>;
  /** The dispatch stream that pushed the task (undefined: leased with LeaseTasks). */
  stream?: DispatchStream;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

const MIN_PROBE_WAIT_MS = 50;

/**
 * A Lifeline worker (services/workers/README.md is the contract): replays its journal, registers, heartbeats over one
 * HeartbeatStream, leases with a long poll (`start: true`), runs handlers, keeps their leases, and delivers every
 * outcome — retrying, journaling while offline and syncing when the gateway answers again. `run()` resolves with the
 * counters after the ordered shutdown (`stop()`, a drain command, or `once` tasks done).
 *
 * Events: `stateChange` ({from, to, reason}).
 */
export class LifelineWorker extends EventEmitter {
  readonly name: string;
  readonly journal: Journal;
  private readonly handlers: Record<string, TaskHandler>;
  private readonly types: string[];
  private readonly maxTasks: number;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly callTimeoutMs: number;
  private shutdownGraceMs: number;
  private readonly stopAfter: number | undefined;
  private readonly version: string;
  private readonly apiKey: string | undefined;
  private readonly logger: Logger;
  private readonly schedule: RetryScheduleOptions;

  private readonly queue: QueueServiceClient;
  private readonly registry: RegistryServiceClient;
  private readonly tracker: ConnectionTracker;
  private readonly outbox: Outbox;
  private readonly batcher: Batcher<Completion>;
  private readonly stats: WorkerCounters = newCounters();

  private readonly held = new Map<string, Held>();
  private ended = 0;
  private workerIdValue = "";
  private sessionEpoch = "0";
  private heartbeatIntervalMs = 5_000;

  private started = false;
  private stopping = false;
  private draining = false;
  private readonly stopController = new AbortController();
  private readonly graceSkip = new AbortController();
  private readonly finishController = new AbortController();
  private leaseAbort: AbortController | undefined;
  private waiters: (() => void)[] = [];
  private useDispatch: boolean;
  private dispatch: DispatchStream | undefined;
  private readonly givingBack = new Set<Promise<void>>();

  private stream: ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse> | undefined;
  private streamUnsupported = false;
  private streamFailed = false;
  private unackedBeats = 0;
  private heartbeatTrouble = false;
  private background: Promise<void>[] = [];

  constructor(options: LifelineWorkerOptions) {
    super();
    const types = Object.keys(options.handlers ?? {}).sort();
    if (types.length === 0) throw new Error("LifelineWorker: at least one handler is needed");
    if (!options.target) throw new Error("LifelineWorker: target is required");
    this.handlers = { ...options.handlers };
    this.types = types;
    this.name = options.name ?? `node-${os.hostname().replace(/[^A-Za-z0-9._-]/g, "-")}-${process.pid}`;
    this.maxTasks = Math.max(1, Math.floor(options.maxTasks ?? 4));
    this.leaseMs = Math.round(1000 * (options.leaseSeconds ?? 30));
    this.pollMs = Math.round(1000 * Math.min(options.pollSeconds ?? 20, 30));
    this.callTimeoutMs = options.callTimeoutMs ?? 5_000;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 20_000;
    this.stopAfter = options.once;
    this.version = options.version ?? "1.0.0";
    this.apiKey = options.apiKey;
    this.logger = options.log ?? defaultLogger(this.name);
    this.schedule = { ...RetrySchedule, ...options.retrySchedule };
    this.useDispatch = options.dispatchStream ?? true;

    const channelOptions: ChannelOptions = {
      // Reconnect soon after the network returns: the default backoff grows to 2 minutes.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": this.schedule.maxDelayMs,
      // Notice a dead connection (a black-holed network) within about 15 s even on a quiet heartbeat stream.
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      ...options.channelOptions,
    };
    const target = parseTarget(options.target);
    this.queue = new QueueServiceClient(target.address, channelCredentials(target.tls), channelOptions);
    if (options.registryTarget && options.registryTarget !== options.target) {
      const registryTarget = parseTarget(options.registryTarget);
      this.registry = new RegistryServiceClient(registryTarget.address, channelCredentials(registryTarget.tls), channelOptions);
    } else {
      this.registry = new RegistryServiceClient(target.address, channelCredentials(target.tls), {
        ...channelOptions,
        channelOverride: this.queue.getChannel(),
      });
    }

    this.journal = new Journal(options.journalDir ?? ".lifeline-journal", this.name);
    this.tracker = new ConnectionTracker({ log: (line) => this.log("info", line), giveUpAfterMs: this.schedule.giveUpAfterMs });
    this.tracker.on("stateChange", (change: StateChange) => this.onStateChange(change, options.onStateChange));
    this.outbox = new Outbox({
      api: {
        completeTasks: async (completions) => {
          const stream = this.usableStream();
          if (stream) return this.completeOnStream(stream, completions);
          const response = await this.call(this.queue.completeTasks.bind(this.queue), CompleteTasksRequest.fromPartial({
            completions: completions.map((c) => ({ taskId: c.taskId, fencingToken: c.fencingToken, result: c.result })),
          }));
          return response.results.map((r) => ({ taskId: r.taskId, accepted: r.accepted, code: r.code, reason: r.reason, message: r.message }));
        },
        failTask: async (failure) => {
          await this.send("fail", this.queue.failTask.bind(this.queue), FailTaskRequest.fromPartial({
            taskId: failure.taskId,
            fencingToken: failure.fencingToken,
            error: {
              code: failure.error.code,
              message: failure.error.message,
              retryable: failure.error.retryable,
              severity: Severity.SEVERITY_MEDIUM,
              details: failure.error.details ?? {},
            },
            retryAfter: failure.error.retry_after_ms !== undefined ? duration(failure.error.retry_after_ms) : undefined,
          }));
        },
        reportProgress: async (report) => {
          await this.send("progress", this.queue.reportProgress.bind(this.queue), ReportProgressRequest.fromPartial({
            taskId: report.taskId,
            fencingToken: report.fencingToken,
            percent: report.progress.percent,
            message: report.progress.message,
            leaseDuration: duration(this.leaseMs),
          }));
        },
      },
      tracker: this.tracker,
      journal: this.journal,
      counters: this.stats,
      log: (level, message) => this.log(level, message),
      latestProgress: (taskId) => {
        const progress = this.held.get(taskId)?.progress;
        return progress && !progress.delivered ? { percent: progress.percent, message: progress.message } : undefined;
      },
      onSettled: (taskId, fencingToken, how, fromJournal) => this.onSettled(taskId, fencingToken, how, fromJournal),
      schedule: this.schedule,
    });
    this.batcher = new Batcher<Completion>(async (completions) => {
      await this.outbox.deliverCompletions(completions);
    }, { maxItems: 100, maxDelayMs: 5 });
  }

  /** The connection state: connected, retrying, offline or syncing. */
  get state(): ConnectionState {
    return this.tracker.state;
  }

  /** A snapshot of the counters. */
  get counters(): WorkerCounters {
    return { ...this.stats };
  }

  /** The registry's id of this worker ("" before registration). */
  get workerId(): string {
    return this.workerIdValue;
  }

  /** Task ids whose handlers are running now. */
  get runningTaskIds(): string[] {
    return [...this.held.values()].filter((h) => h.phase === "running").map((h) => h.task.id);
  }

  /**
   * Asks the worker to stop (safe from a signal handler): `run` then shuts down in the documented order. A second
   * call skips the rest of the grace period for running handlers.
   */
  stop(reason = "stop requested"): void {
    if (this.finishController.signal.aborted) return; // already stopped
    if (this.stopping) {
      if (!this.graceSkip.signal.aborted) this.log("info", `stopping now: ${reason}; not waiting for handlers any longer`);
      this.graceSkip.abort();
      return;
    }
    this.log("info", `stopping: ${reason}`);
    this.stopping = true;
    this.stopController.abort();
    this.leaseAbort?.abort();
    this.wake();
  }

  /** Runs until stopped, drained, or `once` tasks are done; resolves with the counters after the ordered shutdown. */
  async run(): Promise<WorkerCounters> {
    if (this.started) throw new Error("LifelineWorker.run: already started");
    this.started = true;
    try {
      // 1. The journal of an earlier run is replayed before anything is leased.
      const report = this.journal.load();
      if (report.tornTail) this.log("warn", `journal ${this.journal.path}: a torn last line (cut short by a crash before its fsync) was dropped`);
      if (report.badLines.length > 0) this.log("warn", `journal ${this.journal.path}: unreadable line(s) ${report.badLines.join(", ")} dropped`);
      if (this.journal.size > 0) {
        this.tracker.restore("offline"); // where the earlier process left off
        this.tracker.startSync(`journal ${this.journal.path} holds ${this.journal.size} entr${this.journal.size === 1 ? "y" : "ies"} from an earlier run`);
        await this.outbox.sync();
      }
      // 2. Register.
      if (!(await this.register())) return this.counters;
      // 3. Heartbeats, lease keeper (and offline probe), 4. tasks: the dispatch stream, or long polls.
      this.background.push(this.heartbeatLoop(), this.maintenanceLoop());
      await this.dispatchLoop();
    } finally {
      await this.shutdown();
    }
    return this.counters;
  }

  // ------------------------------------------------------------------------------------------------ the life

  private async register(): Promise<boolean> {
    const request = RegisterWorkerRequest.fromPartial({
      name: this.name,
      type: WorkerType.WORKER_TYPE_STANDALONE,
      capabilities: this.types,
      metadata: {
        version: this.version,
        maxConcurrentTasks: this.maxTasks,
        tags: { language: "node", runtime: `node ${process.version}` },
      },
    });
    let step = 0;
    let lastLogged = 0;
    while (!this.stopping) {
      try {
        const response = await this.call(this.registry.registerWorker.bind(this.registry), request);
        this.workerIdValue = response.worker?.id ?? "";
        this.sessionEpoch = response.worker?.sessionEpoch ?? "0";
        const interval = response.heartbeatInterval ? durationMs(response.heartbeatInterval) : 0;
        this.heartbeatIntervalMs = interval > 0 ? interval : 5_000;
        this.tracker.succeeded("RegisterWorker answered");
        this.log("info", `registered ${this.name} as ${this.workerIdValue} (session ${this.sessionEpoch}, heartbeat every ${(this.heartbeatIntervalMs / 1000).toFixed(1)} s, types ${this.types.join(", ")})`);
        return true;
      } catch (error) {
        if (!isTransient(error)) {
          this.tracker.succeeded("RegisterWorker answered");
          throw Object.assign(new Error(`RegisterWorker refused: ${describe(error)}`), { cause: error, code: (error as ServiceError).code });
        }
        this.tracker.failed(`${describe(error)} (RegisterWorker)`);
        if (Date.now() - lastLogged > 10_000) {
          this.log("warn", `register: ${describe(error)}; retrying`);
          lastLogged = Date.now();
        }
        await sleep(Math.max(MIN_PROBE_WAIT_MS, backoffDelay(step++, Math.random, this.schedule)), this.stopController.signal);
      }
    }
    return false;
  }

  /**
   * Takes the tasks the queue pushes on a dispatch stream, opened again (with backoff) when it breaks, until stopped,
   * drained or `once` is done; long polls (`leaseLoop`) when told to (`dispatchStream: false`) or when the queue has no
   * stream (UNIMPLEMENTED). On stop the stream is told 0 slots and stays open: the shutdown's outcomes and releases go
   * on it.
   */
  private async dispatchLoop(): Promise<void> {
    let failures = 0;
    let step = 0;
    let refusalLogged = false;
    while (!this.stopping) {
      if (!this.useDispatch) return this.leaseLoop();
      if (this.leasingOver()) break;
      if (!this.tracker.canSend) {
        await this.changed(1_000); // offline or syncing: nothing is pushed until the journal is replayed
        continue;
      }
      const stream = new DispatchStream(
        {
          slotsFor: (s) => this.slotsFor(s),
          onTask: (s, task) => this.onPushed(s, task),
          onMessage: () => this.tracker.succeeded("Dispatch answered"),
          onEnd: () => this.wake(),
          log: (level, message) => this.log(level, message),
        },
        () => this.queue.dispatch(this.metadata(), {}),
        this.callTimeoutMs,
      );
      const slots = this.slotsFor(stream);
      if (slots <= 0) {
        await this.changed(1_000); // every slot taken by handlers of an earlier stream (or of long polls)
        continue;
      }
      stream.open({ workerId: this.workerIdValue, taskTypes: this.types, leaseDuration: duration(this.leaseMs) }, slots);
      this.dispatch = stream;
      while (!stream.ended) {
        await Promise.race([this.changed(1_000), stream.done]);
        if (this.stopping || !this.tracker.canSend) break;
        stream.updateCapacity();
        if (this.leasingOver()) break;
      }
      if (this.stopping) {
        stream.updateCapacity(); // 0: nothing more is pushed
        return;
      }
      if (!stream.ended) {
        stream.abandon("leasing paused"); // offline or syncing
        continue;
      }
      const error = stream.error;
      if (error?.code === Status.UNIMPLEMENTED) {
        this.log("info", `the queue has no dispatch stream (${describe(error)}); leasing with LeaseTasks long polls`);
        this.useDispatch = false;
        this.tracker.succeeded("Dispatch answered");
        continue;
      }
      if (reasonOf(error) === "WORKER_DRAINING") {
        this.tracker.succeeded("Dispatch answered");
        this.drain("the queue says this worker is draining");
        continue;
      }
      if (reasonOf(error) === "WORKER_OFFLINE") void this.beat(); // the registry lost the heartbeat (an outage): beat at once
      if (stream.answered || Date.now() - stream.openedAt > this.schedule.giveUpAfterMs) {
        failures = 0; // it worked for a while
        step = 0;
        refusalLogged = false;
      }
      const why = error ? describe(error) : "ended by the queue";
      failures += 1;
      if (error && isTransient(error)) {
        // As a long poll's: the first breaks are opened again at once, unseen by the connection state.
        if (failures <= this.schedule.immediateRetries) continue;
        this.tracker.failed(`${why} (Dispatch)`);
      } else if (error && !isCancelled(error)) {
        this.tracker.succeeded("Dispatch answered"); // a refusal (e.g. WORKER_OFFLINE until the next beat): the gateway is there
      }
      const wait = Math.max(MIN_PROBE_WAIT_MS, backoffDelay(step++, Math.random, this.schedule));
      if (!refusalLogged) this.log("warn", `dispatch stream ended: ${why}; opening it again in ${wait} ms`);
      refusalLogged = true;
      await sleep(wait, this.stopController.signal);
    }
  }

  /**
   * Drained (and no handler runs), or `once` tasks have ended and their outcomes are delivered: stops the worker
   * (true).
   */
  private leasingOver(): boolean {
    if (this.draining && this.runningCount() === 0) {
      this.stop("drained");
      return true;
    }
    if (this.capacity() <= 0 && this.onceDone()) {
      this.stop(`${this.stopAfter} task(s) done`);
      return true;
    }
    return false;
  }

  /**
   * The slot count a dispatch stream should have: `maxTasks` less the handlers running for tasks that did not come from
   * it, and with `once` no more than the tasks still allowed on top of those the queue counts against it; 0 while
   * stopping or draining.
   */
  private slotsFor(stream: DispatchStream): number {
    if (this.stopping || this.draining) return 0;
    let others = 0;
    for (const held of this.held.values()) if (held.phase === "running" && held.stream !== stream) others += 1;
    let slots = this.maxTasks - others;
    if (this.stopAfter !== undefined) slots = Math.min(slots, stream.pushed.size + this.stopAfter - this.ended - this.held.size);
    return Math.max(0, Math.min(MAX_STREAM_SLOTS, slots));
  }

  /** A task the queue pushed on `stream`. */
  private onPushed(stream: DispatchStream, task: Task): void {
    const beyond = this.runningCount() >= this.maxTasks || (this.stopAfter !== undefined && this.ended + this.held.size >= this.stopAfter);
    if (this.stopping || this.draining || beyond) {
      // Pushed before the queue heard of 0 slots (or of fewer): give it back on the stream at once.
      const reason = this.stopping ? "worker stopping" : this.draining ? "worker draining" : "pushed beyond the worker's slots";
      const giving = stream
        .request("release", ReleaseTaskRequest.fromPartial({ taskId: task.id, fencingToken: task.fencingToken, reason }), task.id)
        .then(
          () => {
            this.stats.released += 1;
            this.log("info", `task ${task.id} released (${reason})`);
          },
          (error) => this.log("warn", `task ${task.id} not released: ${describe(error)}`),
        );
      this.givingBack.add(giving);
      void giving.finally(() => this.givingBack.delete(giving));
      return;
    }
    this.startTask(task, stream);
  }

  /** The dispatch stream requests may go on now, or undefined (then the unary calls). */
  private usableStream(): DispatchStream | undefined {
    return this.dispatch?.usable ? this.dispatch : undefined;
  }

  /** One request on the dispatch stream while one is open, else the unary call. */
  private async send<K extends DispatchField, Res>(field: K, unary: UnaryMethod<DispatchRequests[K], Res>, request: DispatchRequests[K],
    stream = this.usableStream()): Promise<DispatchAck | Res> {
    if (stream?.usable) return stream.request(field, request, request.taskId);
    return this.call(unary, request);
  }

  /**
   * Completions on the stream, one `complete` each; each answer judged on its own. When none was answered (the stream
   * broke or stalled), the error is the call's: the outbox tries the batch again.
   */
  private async completeOnStream(stream: DispatchStream, completions: Completion[]): Promise<CompletionAnswer[]> {
    const settled = await Promise.allSettled(completions.map((c) =>
      stream.request("complete", CompleteTaskRequest.fromPartial({ taskId: c.taskId, fencingToken: c.fencingToken, result: c.result }), c.taskId)));
    const failures = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failures.length === settled.length && failures.every((f) => isTransient(f.reason))) throw failures[0].reason;
    return settled.map((s, i) => {
      if (s.status === "fulfilled") return { taskId: completions[i].taskId, accepted: true, code: 0, reason: "", message: "" };
      const error = s.reason as StreamCallError;
      return { taskId: completions[i].taskId, accepted: false, code: error.code ?? Status.UNKNOWN, reason: reasonOf(error), message: error.details ?? String(error) };
    });
  }

  private async leaseLoop(): Promise<void> {
    let failures = 0;
    let step = 0;
    let refusalLogged = false;
    while (!this.stopping) {
      if (this.draining) {
        if (this.runningCount() === 0) {
          this.stop("drained");
          break;
        }
        await this.changed(1_000);
        continue;
      }
      if (!this.tracker.canSend) {
        await this.changed(1_000); // every state change wakes it
        continue;
      }
      const capacity = this.capacity();
      if (capacity <= 0) {
        if (this.onceDone()) {
          this.stop(`${this.stopAfter} task(s) done`);
          break;
        }
        await this.changed(1_000);
        continue;
      }
      const controller = new AbortController();
      this.leaseAbort = controller;
      try {
        const response = await this.call(
          this.queue.leaseTasks.bind(this.queue),
          LeaseTasksRequest.fromPartial({
            workerId: this.workerIdValue,
            taskTypes: this.types,
            maxTasks: capacity,
            leaseDuration: duration(this.leaseMs),
            wait: duration(this.pollMs),
            start: true,
          }),
          this.pollMs + this.callTimeoutMs,
          controller.signal,
        );
        failures = 0;
        step = 0;
        refusalLogged = false;
        this.tracker.succeeded("LeaseTasks answered");
        for (const task of response.tasks) this.startTask(task);
      } catch (error) {
        if (isCancelled(error) && controller.signal.aborted) continue; // stop, drain or offline ended the poll
        if (reasonOf(error) === "WORKER_DRAINING") {
          this.tracker.succeeded("LeaseTasks answered");
          this.drain("the queue says this worker is draining");
          continue;
        }
        if (isTransient(error) || isCancelled(error)) {
          failures += 1;
          if (failures <= this.schedule.immediateRetries) continue;
          this.tracker.failed(`${describe(error)} (LeaseTasks)`);
          await sleep(backoffDelay(step++, Math.random, this.schedule), this.stopController.signal);
        } else {
          this.tracker.succeeded("LeaseTasks answered");
          if (!refusalLogged) this.log("warn", `LeaseTasks refused: ${describe(error)}; asking again every 5 s`);
          refusalLogged = true;
          await sleep(5_000, this.stopController.signal);
        }
      } finally {
        if (this.leaseAbort === controller) this.leaseAbort = undefined;
      }
    }
  }

  private capacity(): number {
    let free = this.maxTasks - this.runningCount();
    if (this.stopAfter !== undefined) free = Math.min(free, this.stopAfter - this.ended - this.held.size);
    return free;
  }

  private onceDone(): boolean {
    return (
      this.stopAfter !== undefined &&
      this.ended >= this.stopAfter &&
      this.held.size === 0 &&
      this.journal.size === 0 &&
      this.tracker.state === "connected"
    );
  }

  private runningCount(): number {
    let count = 0;
    for (const h of this.held.values()) if (h.phase === "running") count += 1;
    return count;
  }

  private startTask(task: Task, stream?: DispatchStream): void {
    const handler = this.handlers[task.type];
    const controller = new AbortController();
    const held: Held = {
      task,
      controller,
      phase: "running",
      lastExtendedAt: Date.now(),
      lost: false,
      context: undefined as unknown as TaskContext,
      done: Promise.resolve(),
      stream,
    };
    held.context = new TaskContext(task, controller.signal, (percent, message) => this.reportProgress(held, percent, message));
    this.held.set(task.id, held);
    this.log("info", `task ${task.id} (${task.type}) started, token ${task.fencingToken}, attempt ${task.retryCount + 1}`);
    if (this.stopping) controller.abort(new TaskCancelled("worker stopping", "stopping"));
    held.done = this.runHandler(held, handler).catch((error) => {
      this.log("error", `task ${task.id}: ${(error as Error).stack ?? String(error)}`);
    });
  }

  private async runHandler(held: Held, handler: TaskHandler | undefined): Promise<void> {
    const task = held.task;
    let outcome: { kind: "complete"; result: string } | { kind: "fail"; error: JournalError } | { kind: "release" };
    try {
      if (!handler) throw new TaskFailed("NO_HANDLER", `this worker has no handler for '${task.type}'`, { retryable: true });
      const value = await Promise.resolve().then(() => handler(held.context));
      outcome = { kind: "complete", result: serializeResult(value) };
    } catch (error) {
      if (error instanceof TaskFailed) {
        outcome = {
          kind: "fail",
          error: {
            code: error.code.slice(0, 128) || "TASK_FAILED",
            message: error.message.slice(0, 4096),
            retryable: error.retryable,
            ...(Object.keys(error.details).length > 0 ? { details: error.details } : {}),
            ...(error.retryAfterMs !== undefined ? { retry_after_ms: Math.max(0, Math.round(error.retryAfterMs)) } : {}),
          },
        };
      } else if (held.controller.signal.aborted && (this.stopping || held.lost)) {
        outcome = { kind: "release" };
      } else {
        const e = error as Error;
        this.log("warn", `task ${task.id}: handler threw ${e?.stack ?? String(error)}`);
        outcome = {
          kind: "fail",
          error: { code: "UNHANDLED_EXCEPTION", message: `${e?.name ?? "Error"}: ${e?.message ?? String(error)}`.slice(0, 4096), retryable: true },
        };
      }
    }
    if (held.lost) {
      // Cancelled or lease lost: the outcome would be refused; the queue already moved on.
      this.stats.abandoned += 1;
      this.log("info", `task ${task.id}: no outcome reported (${reasonText(held.controller.signal.reason)})`);
      this.giveBackSlot(held);
      this.forget(held);
      return;
    }
    if (outcome.kind === "release") {
      held.phase = "stopped"; // released during shutdown
      this.wake();
      return;
    }
    held.phase = "reporting";
    this.wake();
    if (outcome.kind === "complete") {
      await this.batcher.add({ taskId: task.id, fencingToken: task.fencingToken, result: outcome.result });
    } else {
      await this.outbox.deliverFailure({ taskId: task.id, fencingToken: task.fencingToken, error: outcome.error });
    }
  }

  /**
   * The queue counts a pushed task against its stream until an outcome or a release of it arrives there. For a task
   * whose lease is gone, a release (refused: it changes nothing) frees the slot.
   */
  private giveBackSlot(held: Held): void {
    const stream = held.stream;
    if (!stream?.usable || !stream.pushed.has(held.task.id)) return;
    stream
      .request("release", ReleaseTaskRequest.fromPartial({ taskId: held.task.id, fencingToken: held.task.fencingToken, reason: "lease lost" }), held.task.id)
      .catch(() => undefined);
  }

  private async reportProgress(held: Held, percent: number, message: string): Promise<void> {
    const record = {
      percent: Math.max(0, Math.min(100, Math.round(Number.isFinite(percent) ? percent : 0))),
      message: String(message ?? "").slice(0, 1024),
      delivered: false,
    };
    held.progress = record;
    if (held.lost || held.phase !== "running" || !this.tracker.canSend || this.finishController.signal.aborted) return;
    const attempt = await this.outbox.attempt(
      "ReportProgress",
      () => this.send("progress", this.queue.reportProgress.bind(this.queue), ReportProgressRequest.fromPartial({
        taskId: held.task.id,
        fencingToken: held.task.fencingToken,
        percent: record.percent,
        message: record.message,
        leaseDuration: duration(this.leaseMs),
      })),
      false,
      false,
    );
    if (attempt.ok) {
      record.delivered = true;
      held.lastExtendedAt = Date.now();
    } else if (attempt.final) {
      this.lose(held, `progress refused: ${describe(attempt.error)}`, "lease-lost");
    }
  }

  private lose(held: Held, reason: string, why: "cancelled" | "lease-lost"): void {
    if (held.lost) return;
    held.lost = true;
    this.log("warn", `task ${held.task.id}: ${reason}; its handler is told to stop and no outcome will be reported`);
    if (!held.controller.signal.aborted) held.controller.abort(new TaskCancelled(reason, why));
    if (held.phase === "stopped") this.forget(held);
  }

  private forget(held: Held): void {
    if (this.held.get(held.task.id) === held) {
      this.held.delete(held.task.id);
      this.ended += 1;
    }
    this.wake();
  }

  private onSettled(taskId: string, fencingToken: string, how: Settlement, fromJournal: boolean): void {
    if (!fromJournal) {
      const held = this.held.get(taskId);
      if (held && held.task.fencingToken === fencingToken) {
        this.forget(held);
      }
    }
    this.wake();
  }

  private onStateChange(change: StateChange, callback?: (change: StateChange) => void): void {
    if (change.to === "offline") this.leaseAbort?.abort(); // lease nothing while offline
    if (change.to === "offline" || change.to === "syncing") this.dispatch?.abandon(`connection ${change.to}`); // nothing pushed either
    if (change.to === "syncing") this.kickSync();
    this.wake();
    try {
      callback?.(change);
    } catch (error) {
      this.log("warn", `onStateChange threw: ${(error as Error).message}`);
    }
    this.emit("stateChange", change);
  }

  private kickSync(): void {
    void this.outbox.sync().then(() => {
      this.wake();
      if (this.tracker.state === "syncing" && !this.finishController.signal.aborted) setImmediate(() => this.kickSync());
    });
  }

  private drain(reason: string): void {
    if (!this.draining) this.log("info", `draining (${reason}): finishing ${this.runningCount()} running task(s), leasing no more`);
    this.draining = true;
    this.leaseAbort?.abort();
    this.wake();
  }

  // ---------------------------------------------------------------------------- lease keeper and probe

  private async maintenanceLoop(): Promise<void> {
    const finished = this.finishController.signal;
    let probeStep = 0;
    while (!finished.aborted) {
      if (this.tracker.state === "offline") {
        await sleep(Math.max(MIN_PROBE_WAIT_MS, backoffDelay(probeStep++, Math.random, this.schedule)), finished);
        if (finished.aborted || this.tracker.state !== "offline") continue;
        await this.probe();
        continue;
      }
      probeStep = 0;
      await sleep(Math.min(1_000, Math.max(100, this.leaseMs / 6)), finished);
      if (finished.aborted) break;
      if (this.tracker.state === "syncing") this.kickSync(); // a sync is running, or starts again
      if (!this.tracker.canSend) continue;
      const now = Date.now();
      const due = [...this.held.values()].filter((h) => !h.lost && now - h.lastExtendedAt >= this.leaseMs / 3);
      await Promise.all(due.map((h) => this.extend(h)));
    }
  }

  /** The lease keeper: extends the lease of a handler that stayed silent for a third of the lease. */
  private async extend(held: Held): Promise<void> {
    const attempt = await this.outbox.attempt(
      "ExtendLease",
      () => this.extendLease(held.task.id, held.task.fencingToken),
      false,
      false,
    );
    if (attempt.ok) held.lastExtendedAt = Date.now();
    else if (attempt.final) this.lose(held, `lease lost: ${describe(attempt.error)}`, "lease-lost");
  }

  /**
   * While offline: extend the leases of every task this worker holds — running, or with its outcome in the journal —
   * so they are alive the moment the network returns; with none, a unary Heartbeat. The first answer → syncing.
   */
  private async probe(): Promise<void> {
    const targets = new Map<string, { token: string; held?: Held }>();
    for (const held of this.held.values()) if (!held.lost) targets.set(held.task.id, { token: held.task.fencingToken, held });
    for (const entry of this.journal.entries) {
      if (entry.kind !== "progress" && !targets.has(entry.task_id)) targets.set(entry.task_id, { token: entry.fencing_token });
    }
    if (targets.size === 0) {
      if (!this.workerIdValue) return;
      try {
        const response = await this.call(this.registry.heartbeat.bind(this.registry), this.beatRequest());
        this.tracker.succeeded("probe: Heartbeat answered");
        this.onBeatAnswer(response);
      } catch (error) {
        if (isTransient(error)) this.tracker.failed(`${describe(error)} (probe: Heartbeat)`);
        else this.tracker.succeeded(`probe: Heartbeat answered (${describe(error)})`);
      }
      return;
    }
    const answers = await Promise.all(
      [...targets].map(async ([taskId, { token, held }]) => {
        try {
          await this.extendLease(taskId, token, false);
          if (held) held.lastExtendedAt = Date.now();
          return "ok";
        } catch (error) {
          if (isTransient(error)) return describe(error);
          if (held) this.lose(held, `lease lost: ${describe(error)}`, "lease-lost");
          return "answered";
        }
      }),
    );
    const reached = answers.filter((a) => a === "ok" || a === "answered").length;
    if (reached > 0) this.tracker.succeeded(`probe: ExtendLease answered for ${reached} of ${answers.length} task(s)`);
    else this.tracker.failed(`${answers[0]} (probe: ExtendLease)`);
  }

  /** On the dispatch stream while one is open (`viaStream`), else the unary call (always for the offline probe). */
  private async extendLease(taskId: string, fencingToken: string, viaStream = true): Promise<void> {
    await this.send("extendLease", this.queue.extendLease.bind(this.queue), ExtendLeaseRequest.fromPartial({
      taskId,
      fencingToken,
      leaseDuration: duration(this.leaseMs),
    }), viaStream ? this.usableStream() : undefined);
  }

  // ---------------------------------------------------------------------------------------- heartbeats

  private beatRequest(): HeartbeatRequest {
    const running = [...this.held.values()].filter((h) => !h.lost).map((h) => h.task.id).slice(0, 1000);
    return HeartbeatRequest.fromPartial({
      workerId: this.workerIdValue,
      sessionEpoch: this.sessionEpoch,
      status: this.runningCount() >= this.maxTasks ? WorkerStatus.WORKER_STATUS_BUSY : WorkerStatus.WORKER_STATUS_ONLINE,
      runningTaskIds: running,
      load: Math.min(1, this.runningCount() / this.maxTasks),
    });
  }

  private async heartbeatLoop(): Promise<void> {
    const finished = this.finishController.signal;
    while (!finished.aborted) {
      await this.beat();
      await sleep(this.heartbeatIntervalMs, finished);
    }
  }

  /**
   * One beat: on the stream while it works; when it failed since the last beat (or the server has no stream), a
   * unary Heartbeat instead, and a new stream for the next beat. A stream that acknowledged none of the last two
   * beats is given up.
   */
  private async beat(): Promise<void> {
    const request = this.beatRequest();
    if (!this.streamUnsupported) {
      if (this.stream && this.unackedBeats >= 2) {
        this.log("warn", "heartbeat stream: no answer to the last two beats; opening a new one");
        this.dropStream();
        this.streamFailed = true;
      }
      if (!this.stream && !this.streamFailed) this.openStream();
      if (this.stream) {
        this.unackedBeats += 1;
        this.stream.write(HeartbeatStreamRequest.fromPartial({ beat: request }));
        return;
      }
    }
    try {
      const response = await this.call(this.registry.heartbeat.bind(this.registry), request);
      this.tracker.succeeded("Heartbeat answered");
      if (this.heartbeatTrouble) this.log("info", "heartbeats answered again");
      this.heartbeatTrouble = false;
      this.onBeatAnswer(response);
    } catch (error) {
      if (isTransient(error)) {
        this.tracker.failed(`${describe(error)} (Heartbeat)`);
        if (!this.heartbeatTrouble) this.log("warn", `heartbeat: ${describe(error)}`);
        this.heartbeatTrouble = true;
      } else {
        this.tracker.succeeded("Heartbeat answered");
        this.onBeatRefused(error);
      }
    }
    if (!this.streamUnsupported && !this.finishController.signal.aborted) {
      this.streamFailed = false;
      this.openStream();
    }
  }

  private openStream(): void {
    const stream = this.registry.heartbeatStream(this.metadata(), {});
    this.stream = stream;
    this.unackedBeats = 0;
    stream.on("data", (message: HeartbeatStreamResponse) => {
      if (stream !== this.stream) return;
      if (message.ack) {
        this.unackedBeats = 0;
        if (this.heartbeatTrouble) this.log("info", "heartbeats answered again");
        this.heartbeatTrouble = false;
        this.onBeatAnswer(message.ack);
      }
      if (message.command) this.onCommand(message.command);
    });
    stream.on("error", (error: ServiceError) => {
      if (stream !== this.stream) return;
      this.stream = undefined;
      this.streamFailed = true;
      if (error.code === Status.UNIMPLEMENTED) {
        this.streamUnsupported = true;
        this.log("info", "the registry has no HeartbeatStream here: unary heartbeats");
      } else if (!isTransient(error) && !isCancelled(error)) {
        this.onBeatRefused(error);
      } else if (!this.heartbeatTrouble) {
        this.log("warn", `heartbeat stream: ${describe(error)}`);
        this.heartbeatTrouble = true;
      }
    });
    stream.on("end", () => {
      if (stream === this.stream) {
        this.stream = undefined;
        this.streamFailed = true;
      }
    });
  }

  private dropStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    if (stream) {
      stream.removeAllListeners("data");
      stream.on("error", () => undefined);
      try {
        stream.end();
      } catch {
        // already closed
      }
      stream.cancel();
    }
  }

  private onBeatAnswer(response: HeartbeatResponse): void {
    for (const command of response.commands) this.onCommand(command);
  }

  private onBeatRefused(error: unknown): void {
    const reason = reasonOf(error);
    if (reason === "STALE_SESSION") {
      this.log("error", `heartbeat refused: another process registered ${this.name} again and owns it now`);
      this.stop("session superseded");
      return;
    }
    if (!this.heartbeatTrouble) this.log("warn", `heartbeat refused: ${describe(error)}`);
    this.heartbeatTrouble = true;
  }

  private onCommand(command: WorkerCommand): void {
    if (command.drain) {
      this.drain(command.drain.reason || "drain command");
    } else if (command.cancelTask) {
      const held = this.held.get(command.cancelTask.taskId);
      if (held) this.lose(held, `cancelled: ${command.cancelTask.reason || "cancel command"}`, "cancelled");
    }
  }

  // ------------------------------------------------------------------------------------------ shutdown

  /**
   * README, "Shutdown order": stop leasing → tell running handlers → wait for them up to the grace period → flush the
   * outcome batch → outcomes still undelivered go to the journal → release tasks still held → stop heartbeats →
   * deregister → close the channel.
   */
  private async shutdown(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.stopController.abort();
    }
    this.leaseAbort?.abort();
    const running = [...this.held.values()].filter((h) => h.phase === "running");
    for (const held of running) {
      if (!held.controller.signal.aborted) held.controller.abort(new TaskCancelled("worker stopping", "stopping"));
    }
    if (running.length > 0) {
      this.log("info", `waiting up to ${(this.shutdownGraceMs / 1000).toFixed(0)} s for ${running.length} running handler(s)`);
      const graceOver = new AbortController();
      const skip = () => graceOver.abort();
      this.graceSkip.signal.addEventListener("abort", skip, { once: true });
      await Promise.race([
        Promise.allSettled(running.map((h) => h.done)),
        sleep(this.shutdownGraceMs, graceOver.signal),
      ]);
      graceOver.abort(); // no timer left behind to keep the process alive
      this.graceSkip.signal.removeEventListener("abort", skip);
    }
    // Handlers still running now will be released: whatever they return later is not reported.
    const leftovers = [...this.held.values()].filter((h) => h.phase === "running" || h.phase === "stopped");
    for (const held of leftovers) held.lost = true;
    await this.batcher.flush();
    await this.outbox.stop();
    for (const held of leftovers) await this.release(held, held.phase === "running" ? "worker shutdown: handler still running" : "worker shutdown");
    await Promise.allSettled([...this.givingBack]);
    await this.dispatch?.close(this.callTimeoutMs);
    this.finishController.abort();
    this.dropStream();
    await Promise.allSettled(this.background);
    if (this.workerIdValue) {
      try {
        await this.call(this.registry.deregisterWorker.bind(this.registry), DeregisterWorkerRequest.fromPartial({ workerId: this.workerIdValue }));
        this.log("info", `deregistered ${this.workerIdValue}`);
      } catch (error) {
        this.log("warn", `deregister: ${describe(error)}`);
      }
    }
    this.queue.close();
    if (this.registry.getChannel() !== this.queue.getChannel()) this.registry.close();
    const c = this.stats;
    this.log(
      "info",
      `stopped: ${c.completed} completed, ${c.failed} failed, ${c.refused} refused, ${c.journaled} journaled, ${c.replayed} replayed, ` +
        `${c.retries} retries, ${c.released} released, ${c.abandoned} abandoned; ${this.journal.size} journal entr${this.journal.size === 1 ? "y" : "ies"} left`,
    );
  }

  private async release(held: Held, reason: string): Promise<void> {
    const request = ReleaseTaskRequest.fromPartial({ taskId: held.task.id, fencingToken: held.task.fencingToken, reason });
    try {
      try {
        await this.send("release", this.queue.releaseTask.bind(this.queue), request, held.stream?.usable ? held.stream : this.usableStream());
      } catch (error) {
        if (!(error instanceof StreamCallError) || !isTransient(error)) throw error;
        await this.call(this.queue.releaseTask.bind(this.queue), request); // the stream broke: the unary call
      }
      this.stats.released += 1;
      this.log("info", `task ${held.task.id} released (${reason})`);
    } catch (error) {
      this.log("warn", `task ${held.task.id} not released: ${describe(error)}`);
    } finally {
      if (this.held.get(held.task.id) === held) this.held.delete(held.task.id);
    }
  }

  // --------------------------------------------------------------------------------------------- plumbing

  private metadata(): Metadata {
    const metadata = new Metadata();
    if (this.apiKey) metadata.set("authorization", `Bearer ${this.apiKey}`);
    return metadata;
  }

  /** One unary call with the API key and a deadline; `signal` cancels it. */
  private call<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, timeoutMs = this.callTimeoutMs, signal?: AbortSignal): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const onAbort = () => call.cancel();
      const call = method(request, this.metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => {
        signal?.removeEventListener("abort", onAbort);
        if (error) reject(error);
        else resolve(response);
      });
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Resolves on the next change (a task ended, the state changed, stop or drain) or after `timeoutMs`. */
  private changed(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  private log(level: LogLevel, message: string): void {
    this.logger(level, message);
  }
}

function channelCredentials(tls: boolean): ChannelCredentials {
  return tls ? grpcCredentials.createSsl() : grpcCredentials.createInsecure();
}

function duration(ms: number): Duration {
  const whole = Math.max(0, Math.round(ms));
  return { seconds: String(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 };
}

function durationMs(value: Duration): number {
  return Number(value.seconds) * 1000 + Math.round(value.nanos / 1_000_000);
}

function serializeResult(value: unknown): string {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value) ?? "";
  } catch (error) {
    throw new TaskFailed("RESULT_NOT_JSON", `the handler's result cannot be written as JSON: ${(error as Error).message}`);
  }
}

function reasonText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason ?? "cancelled");
}

function defaultLogger(name: string): Logger {
  return (level, message) => {
    process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} lifeline.worker[${name}]: ${message}\n`);
  };
}

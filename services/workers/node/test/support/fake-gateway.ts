/**
 * A tiny in-process stand-in for the gateway (queue + registry) and a TCP proxy in front of it that can go down and
 * come back: enough of the contract for the worker's end-to-end tests, no real suite needed. Not a test file itself.
 *
 * The queue has the dispatch stream (QueueService.Dispatch): it pushes pending tasks, leased and started, up to the
 * stream's slots, answers each request with an ack (a refusal is an ack), frees a slot with an outcome or a release of a
 * task pushed on the same stream; `cutStreams()` breaks every open stream, `cutBeforeAck` applies the next outcome and
 * breaks its stream before answering it, `dispatchSupported = false` answers UNIMPLEMENTED like a queue without it.
 */
import * as net from "node:net";
import {
  Metadata,
  Server,
  ServerCredentials,
  ServerDuplexStream,
  ServerUnaryCall,
  sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { ErrorInfo, Status } from "../../src/generated/google/rpc/status";
import {
  CompleteTaskRequest,
  CompleteTasksRequest,
  CompleteTasksResponse,
  DispatchAck,
  DispatchRequest,
  DispatchResponse,
  ExtendLeaseRequest,
  ExtendLeaseResponse,
  FailTaskRequest,
  FailTaskResponse,
  LeaseTasksRequest,
  LeaseTasksResponse,
  QueueServiceService,
  ReleaseTaskRequest,
  ReleaseTaskResponse,
  ReportProgressRequest,
  ReportProgressResponse,
  Task,
  TaskStatus,
} from "../../src/generated/lifeline/queue/v1/queue";
import {
  DeregisterWorkerRequest,
  DeregisterWorkerResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
  RegisterWorkerRequest,
  RegisterWorkerResponse,
  RegistryServiceService,
  WorkerCommand,
  WorkerStatus,
  WorkerType,
} from "../../src/generated/lifeline/registry/v1/registry";

export interface FakeTask {
  id: string;
  type: string;
  payload: string;
  status: "pending" | "running" | "completed" | "failed";
  token: number;
  holder: string;
  leaseExpiresAt: number;
  /** Completions accepted (a repeat with the same token is accepted but not counted). */
  completions: number;
  result: string;
  failures: number;
  progress: number;
  /** Times pushed on a dispatch stream. */
  pushes: number;
  /** Releases accepted. */
  releases: number;
}

interface FakeStream {
  opened: boolean;
  slots: number;
  types: string[];
  leaseMs: number;
  holder: string;
  /** Pushed, no outcome or release on this stream yet. */
  outstanding: Set<string>;
  ended: boolean;
  call: ServerDuplexStream<DispatchRequest, DispatchResponse>;
}

type DispatchKind = "open" | "capacity" | "complete" | "fail" | "progress" | "extendLease" | "release";

function refusal(code: number, reason: string, message: string) {
  const info = ErrorInfo.encode({ reason, domain: "lifeline", metadata: {} }).finish();
  const details = Status.encode({
    code,
    message,
    details: [{ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) }],
  }).finish();
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(details));
  return { code, details: message, metadata, reason };
}

const ms = (d: { seconds: string; nanos: number } | undefined, fallback: number) =>
  d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : fallback;

export class FakeGateway {
  readonly tasks = new Map<string, FakeTask>();
  /** Every call, in order: `Queue.LeaseTasks`, `Registry.RegisterWorker`, … */
  readonly calls: string[] = [];
  readonly apiKeys = new Set<string>();
  private server = new Server();
  private nextId = 1;
  private nextToken = 1;
  private epochs = new Map<string, number>();
  private streams = new Set<ServerDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse>>();
  private pendingCommands: WorkerCommand[] = [];
  private dispatchStreams = new Set<FakeStream>();
  /** Every slot count a dispatch stream was given (open, then each capacity), in order. */
  readonly slotCounts: number[] = [];
  dispatchSupported = true;
  /** The next complete or fail on a stream is applied, then the stream breaks before answering it. */
  cutBeforeAck = false;
  /** A longer result is bad input (INVALID_ARGUMENT): on a stream it ends the stream, answers before it sent. */
  maxResult = 1 << 20;
  port = 0;

  constructor(readonly heartbeatIntervalMs = 500) {}

  async start(): Promise<number> {
    this.server.addService(QueueServiceService, {
      leaseTasks: (call: ServerUnaryCall<LeaseTasksRequest, LeaseTasksResponse>, done: sendUnaryData<LeaseTasksResponse>) =>
        this.unary("Queue.LeaseTasks", call, done, () => this.lease(call)),
      completeTasks: (call: ServerUnaryCall<CompleteTasksRequest, CompleteTasksResponse>, done: sendUnaryData<CompleteTasksResponse>) =>
        this.unary("Queue.CompleteTasks", call, done, async () => {
          if (call.request.completions.some((c) => c.result.length > this.maxResult)) throw { code: status.INVALID_ARGUMENT, details: "result too long" };
          return this.complete(call.request);
        }),
      failTask: (call: ServerUnaryCall<FailTaskRequest, FailTaskResponse>, done: sendUnaryData<FailTaskResponse>) =>
        this.unary("Queue.FailTask", call, done, async () => FailTaskResponse.fromPartial({ willRetry: this.fail(call.request) })),
      reportProgress: (call: ServerUnaryCall<ReportProgressRequest, ReportProgressResponse>, done: sendUnaryData<ReportProgressResponse>) =>
        this.unary("Queue.ReportProgress", call, done, async () => {
          this.reportProgress(call.request);
          return ReportProgressResponse.fromPartial({});
        }),
      extendLease: (call: ServerUnaryCall<ExtendLeaseRequest, ExtendLeaseResponse>, done: sendUnaryData<ExtendLeaseResponse>) =>
        this.unary("Queue.ExtendLease", call, done, async () => {
          this.extendLease(call.request);
          return ExtendLeaseResponse.fromPartial({});
        }),
      releaseTask: (call: ServerUnaryCall<ReleaseTaskRequest, ReleaseTaskResponse>, done: sendUnaryData<ReleaseTaskResponse>) =>
        this.unary("Queue.ReleaseTask", call, done, async () => {
          this.release(call.request);
          return ReleaseTaskResponse.fromPartial({});
        }),
      dispatch: (call: ServerDuplexStream<DispatchRequest, DispatchResponse>) => this.dispatch(call),
    });
    this.server.addService(RegistryServiceService, {
      registerWorker: (call: ServerUnaryCall<RegisterWorkerRequest, RegisterWorkerResponse>, done: sendUnaryData<RegisterWorkerResponse>) =>
        this.unary("Registry.RegisterWorker", call, done, async () => {
          const epoch = (this.epochs.get(call.request.name) ?? 0) + 1;
          this.epochs.set(call.request.name, epoch);
          return RegisterWorkerResponse.fromPartial({
            worker: { id: `worker-${call.request.name}`, name: call.request.name, sessionEpoch: String(epoch), type: WorkerType.WORKER_TYPE_STANDALONE },
            heartbeatInterval: { seconds: String(Math.floor(this.heartbeatIntervalMs / 1000)), nanos: (this.heartbeatIntervalMs % 1000) * 1e6 },
            created: epoch === 1,
          });
        }),
      heartbeat: (call: ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>, done: sendUnaryData<HeartbeatResponse>) =>
        this.unary("Registry.Heartbeat", call, done, async () =>
          HeartbeatResponse.fromPartial({ status: WorkerStatus.WORKER_STATUS_ONLINE, commands: this.pendingCommands.splice(0) })),
      heartbeatStream: (stream: ServerDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse>) => {
        this.calls.push("Registry.HeartbeatStream");
        this.streams.add(stream);
        stream.on("data", () => {
          this.calls.push("Registry.HeartbeatStream.beat");
          stream.write(HeartbeatStreamResponse.fromPartial({ ack: { status: WorkerStatus.WORKER_STATUS_ONLINE, commands: this.pendingCommands.splice(0) } }));
        });
        stream.on("end", () => {
          this.streams.delete(stream);
          stream.end();
        });
        stream.on("error", () => this.streams.delete(stream));
        stream.on("cancelled", () => this.streams.delete(stream));
      },
      deregisterWorker: (call: ServerUnaryCall<DeregisterWorkerRequest, DeregisterWorkerResponse>, done: sendUnaryData<DeregisterWorkerResponse>) =>
        this.unary("Registry.DeregisterWorker", call, done, async () => DeregisterWorkerResponse.fromPartial({})),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
    return this.port;
  }

  async close(): Promise<void> {
    for (const stream of this.streams) stream.end();
    this.cutStreams();
    this.server.forceShutdown();
  }

  /** Breaks every open dispatch stream (UNAVAILABLE), as a lost connection would. */
  cutStreams(): void {
    for (const stream of [...this.dispatchStreams]) this.endStream(stream, { code: status.UNAVAILABLE, details: "the dispatch stream was cut" });
  }

  /** Dispatch streams open now. */
  get openStreams(): number {
    return this.dispatchStreams.size;
  }

  enqueue(type: string, payload: unknown = {}): string {
    const id = `00000000-0000-4000-8000-${String(this.nextId++).padStart(12, "0")}`;
    this.tasks.set(id, {
      id, type, payload: JSON.stringify(payload), status: "pending", token: 0, holder: "", leaseExpiresAt: 0,
      completions: 0, result: "", failures: 0, progress: 0, pushes: 0, releases: 0,
    });
    return id;
  }

  /** Someone else leases the task now (its lease ran out and another worker took it): a new, larger token. */
  leaseToAnother(taskId: string, holder = "another-worker"): number {
    const task = this.tasks.get(taskId)!;
    task.status = "running";
    task.holder = holder;
    task.token = this.nextToken++;
    task.leaseExpiresAt = Date.now() + 30_000;
    return task.token;
  }

  /** What the real queue's maintenance does with leases that ran out: back to pending. */
  expireLeases(): void {
    const now = Date.now();
    for (const task of this.tasks.values()) {
      if (task.status === "running" && task.leaseExpiresAt < now) {
        task.status = "pending";
        task.holder = "";
      }
    }
  }

  /** Completes a task as its current holder (for "the next holder completes it"). */
  completeAs(taskId: string, token: number, result = "{}"): void {
    const answer = this.complete(CompleteTasksRequest.fromPartial({ completions: [{ taskId, fencingToken: String(token), result }] }));
    if (!answer.results[0].accepted) throw new Error(`completeAs: ${answer.results[0].reason}`);
  }

  /** A command pushed on every open heartbeat stream (and answered to the next unary beat). */
  command(command: WorkerCommand): void {
    if (this.streams.size === 0) this.pendingCommands.push(command);
    for (const stream of this.streams) stream.write(HeartbeatStreamResponse.fromPartial({ command }));
  }

  count(method: string): number {
    return this.calls.filter((c) => c === method).length;
  }

  private async unary<Req, Res>(name: string, call: ServerUnaryCall<Req, Res>, done: sendUnaryData<Res>, work: () => Promise<Res>) {
    this.calls.push(name);
    if (this.apiKeys.size > 0) {
      const auth = String(call.metadata.get("authorization")[0] ?? "");
      if (!this.apiKeys.has(auth.replace(/^Bearer /, ""))) return done({ code: status.UNAUTHENTICATED, details: "bad key" });
    }
    try {
      done(null, await work());
    } catch (error) {
      done(error as never);
    }
  }

  private async lease(call: ServerUnaryCall<LeaseTasksRequest, LeaseTasksResponse>): Promise<LeaseTasksResponse> {
    const request = call.request;
    const deadline = Date.now() + Math.min(ms(request.wait, 0), 30_000);
    for (;;) {
      const now = Date.now();
      const ready = [...this.tasks.values()].filter(
        (t) => request.taskTypes.includes(t.type) && (t.status === "pending" || (t.status === "running" && t.leaseExpiresAt < now)),
      );
      if (call.cancelled) return LeaseTasksResponse.fromPartial({}); // the worker gave up the poll: lease nothing
      if (ready.length > 0 || now >= deadline) {
        const leased = ready.slice(0, Math.max(1, request.maxTasks)).map((t) => {
          t.status = "running";
          t.holder = request.workerId;
          t.token = this.nextToken++;
          t.leaseExpiresAt = now + ms(request.leaseDuration, 30_000);
          return t;
        });
        return LeaseTasksResponse.fromPartial({ tasks: leased.map((t) => this.wire(t)) });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private complete(request: CompleteTasksRequest): CompleteTasksResponse {
    const results = request.completions.map((c) => {
      const task = this.tasks.get(c.taskId);
      if (!task) return { taskId: c.taskId, accepted: false, code: status.NOT_FOUND, reason: "TASK_NOT_FOUND", message: "no such task" };
      if (String(task.token) !== c.fencingToken) {
        return { taskId: c.taskId, accepted: false, code: status.FAILED_PRECONDITION, reason: "STALE_FENCING_TOKEN", message: `token ${c.fencingToken} is not the current ${task.token}` };
      }
      if (task.status === "completed") return { taskId: c.taskId, accepted: true, code: 0, reason: "", message: "" }; // a repeat
      if (task.status !== "running") return { taskId: c.taskId, accepted: false, code: status.FAILED_PRECONDITION, reason: "INVALID_TASK_STATE", message: task.status };
      task.status = "completed";
      task.completions += 1;
      task.result = c.result;
      return { taskId: c.taskId, accepted: true, code: 0, reason: "", message: "" };
    });
    return CompleteTasksResponse.fromPartial({ results, acceptedCount: results.filter((r) => r.accepted).length });
  }

  private fail(request: FailTaskRequest): boolean {
    const task = this.held(request.taskId, request.fencingToken);
    if (task.status === "failed" || task.status === "pending") return task.status === "pending"; // a repeat
    task.failures += 1;
    task.status = request.error?.retryable ? "pending" : "failed";
    return task.status === "pending";
  }

  private reportProgress(request: ReportProgressRequest): FakeTask {
    const task = this.running(request.taskId, request.fencingToken);
    task.progress = request.percent;
    task.leaseExpiresAt = Date.now() + ms(request.leaseDuration, 30_000);
    return task;
  }

  private extendLease(request: ExtendLeaseRequest): FakeTask {
    const task = this.running(request.taskId, request.fencingToken);
    task.leaseExpiresAt = Date.now() + ms(request.leaseDuration, 30_000);
    return task;
  }

  private release(request: ReleaseTaskRequest): FakeTask {
    const task = this.running(request.taskId, request.fencingToken);
    task.status = "pending";
    task.holder = "";
    task.releases += 1;
    return task;
  }

  // ------------------------------------------------------------------------------------------- dispatch stream

  private dispatch(call: ServerDuplexStream<DispatchRequest, DispatchResponse>): void {
    this.calls.push("Queue.Dispatch");
    if (this.apiKeys.size > 0) {
      const auth = String(call.metadata.get("authorization")[0] ?? "");
      if (!this.apiKeys.has(auth.replace(/^Bearer /, ""))) {
        call.emit("error", { code: status.UNAUTHENTICATED, details: "bad key" });
        return;
      }
    }
    if (!this.dispatchSupported) {
      call.emit("error", { code: status.UNIMPLEMENTED, details: "Method not found: lifeline.queue.v1.QueueService/Dispatch" });
      return;
    }
    const stream: FakeStream = { opened: false, slots: 0, types: [], leaseMs: 30_000, holder: "", outstanding: new Set(), ended: false, call };
    this.dispatchStreams.add(stream);
    const pump = setInterval(() => this.pump(stream), 20);
    call.on("data", (request: DispatchRequest) => this.onDispatchRequest(stream, request));
    call.on("end", () => {
      clearInterval(pump);
      if (!stream.ended) {
        stream.ended = true;
        this.dispatchStreams.delete(stream);
        call.end(); // the worker half-closed; everything is answered (requests are answered as they come)
      }
    });
    const gone = () => {
      clearInterval(pump);
      stream.ended = true;
      this.dispatchStreams.delete(stream);
    };
    call.on("error", gone);
    call.on("cancelled", gone);
    call.on("close", gone);
  }

  private onDispatchRequest(stream: FakeStream, request: DispatchRequest): void {
    if (stream.ended) return;
    const kind: DispatchKind = request.open ? "open" : request.capacity ? "capacity" : request.complete ? "complete" : request.fail ? "fail"
      : request.progress ? "progress" : request.extendLease ? "extendLease" : "release";
    this.calls.push(`Queue.Dispatch.${kind}`);
    if ((kind === "open") === stream.opened) {
      this.endStream(stream, { code: status.INVALID_ARGUMENT, details: "`open` must be the first message, and only the first" });
      return;
    }
    if (kind === "complete" && request.complete!.result.length > this.maxResult) {
      this.endStream(stream, { code: status.INVALID_ARGUMENT, details: `complete.result: more than ${this.maxResult} bytes` });
      return;
    }
    if (kind === "open") {
      stream.opened = true;
      stream.slots = request.open!.slots;
      stream.types = request.open!.taskTypes;
      stream.leaseMs = ms(request.open!.leaseDuration, 30_000);
      stream.holder = request.open!.workerId;
      this.slotCounts.push(stream.slots);
    } else if (kind === "capacity") {
      stream.slots = request.capacity!.slots;
      this.slotCounts.push(stream.slots);
    } else {
      const ack = this.answer(kind, request);
      const taskId = ack.taskId;
      if (kind === "complete" || kind === "fail" || kind === "release") {
        stream.outstanding.delete(taskId);
        if (this.cutBeforeAck && kind !== "release") {
          this.cutBeforeAck = false;
          this.endStream(stream, { code: status.UNAVAILABLE, details: "cut before the ack" });
          return;
        }
      }
      stream.call.write(DispatchResponse.fromPartial({ ack }));
    }
    this.pump(stream);
  }

  private answer(kind: Exclude<DispatchKind, "open" | "capacity">, request: DispatchRequest): DispatchAck {
    const message = request[kind]!;
    const ack = DispatchAck.fromPartial({ requestId: request.requestId, taskId: message.taskId });
    try {
      let task: FakeTask;
      if (kind === "complete") {
        const c = request.complete as CompleteTaskRequest;
        const answer = this.complete(CompleteTasksRequest.fromPartial({ completions: [{ taskId: c.taskId, fencingToken: c.fencingToken, result: c.result }] })).results[0];
        if (!answer.accepted) throw { code: answer.code, reason: answer.reason, details: answer.message };
        task = this.tasks.get(c.taskId)!;
      } else if (kind === "fail") {
        ack.willRetry = this.fail(request.fail!);
        task = this.tasks.get(message.taskId)!;
      } else if (kind === "progress") {
        task = this.reportProgress(request.progress!);
      } else if (kind === "extendLease") {
        task = this.extendLease(request.extendLease!);
      } else {
        task = this.release(request.release!);
      }
      ack.accepted = true;
      ack.task = this.wire(task);
    } catch (error) {
      const refused = error as { code: number; reason: string; details: string };
      ack.accepted = false;
      ack.code = refused.code;
      ack.reason = refused.reason;
      ack.message = refused.details;
    }
    return ack;
  }

  /** Pushes pending tasks while the stream has free slots. */
  private pump(stream: FakeStream): void {
    if (stream.ended || !stream.opened) return;
    const now = Date.now();
    while (stream.outstanding.size < stream.slots) {
      const task = [...this.tasks.values()].find((t) => stream.types.includes(t.type) && t.status === "pending");
      if (!task) return;
      task.status = "running";
      task.holder = stream.holder;
      task.token = this.nextToken++;
      task.leaseExpiresAt = now + stream.leaseMs;
      task.pushes += 1;
      stream.outstanding.add(task.id);
      stream.call.write(DispatchResponse.fromPartial({ task: this.wire(task) }));
    }
  }

  private endStream(stream: FakeStream, error: { code: number; details: string }): void {
    if (stream.ended) return;
    stream.ended = true;
    this.dispatchStreams.delete(stream);
    stream.call.emit("error", error);
  }

  private held(taskId: string, token: string): FakeTask {
    const task = this.tasks.get(taskId);
    if (!task) throw refusal(status.NOT_FOUND, "TASK_NOT_FOUND", "no such task");
    if (String(task.token) !== token) throw refusal(status.FAILED_PRECONDITION, "STALE_FENCING_TOKEN", `token ${token} is not the current ${task.token}`);
    return task;
  }

  private running(taskId: string, token: string): FakeTask {
    const task = this.held(taskId, token);
    if (task.status !== "running") throw refusal(status.FAILED_PRECONDITION, "INVALID_TASK_STATE", task.status);
    return task;
  }

  private wire(t: FakeTask): Task {
    return Task.fromPartial({ id: t.id, type: t.type, payload: t.payload, status: TaskStatus.TASK_STATUS_RUNNING, fencingToken: String(t.token), assignedWorkerId: t.holder });
  }
}

/** A TCP proxy to `targetPort` that can refuse connections and cut the ones it has (a network outage). */
export class FaultProxy {
  private listener: net.Server | undefined;
  private sockets = new Set<net.Socket>();
  private holding = false;
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    await this.listen(0);
    return this.port;
  }

  get address(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Cuts every connection and refuses new ones. */
  async down(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (listener) await new Promise<void>((resolve) => listener.close(() => resolve()));
  }

  /**
   * While on, connections stay open (and new ones are accepted) but no byte passes either way — a partitioned network.
   * Bytes held meanwhile pass when it ends, like the suite's FaultProxy.
   */
  blackHole(on: boolean): void {
    this.holding = on;
    for (const socket of this.sockets) {
      if (on) socket.pause();
      else socket.resume();
    }
  }

  async up(): Promise<void> {
    if (!this.listener) await this.listen(this.port);
  }

  private listen(port: number): Promise<void> {
    const listener = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, "127.0.0.1");
      this.sockets.add(client).add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
      client.pipe(upstream);
      upstream.pipe(client);
      if (this.holding) {
        client.pause();
        upstream.pause();
      }
    });
    this.listener = listener;
    return new Promise((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(port, "127.0.0.1", () => {
        this.port = (listener.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }
}

/** Polls `condition` every 20 ms until it holds, or fails after `timeoutMs` with `what`. */
export async function eventually(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

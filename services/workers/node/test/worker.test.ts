/**
 * The worker end to end against an in-process fake gateway (a real grpc-js server) behind a TCP proxy that goes down
 * and comes back. The retry window is shortened (1 s instead of 10 s) to keep the tests quick; the schedule's shape is
 * the contract's.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { LifelineWorker, LifelineWorkerOptions, StateChange, TaskContext, TaskFailed, TaskHandler } from "../src";
import { Journal } from "../src/journal";
import { FakeGateway, FaultProxy, eventually } from "./support/fake-gateway";

const SCHEDULE = { immediateRetries: 2, baseDelayMs: 20, maxDelayMs: 200, giveUpAfterMs: 1_000 };

function wait(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/**
 * Opened by a test once its fault is in place: a handler that waits on it cannot finish before the fault, however slowly
 * a loaded machine runs the test (a fixed sleep in the handler could end before the test had cut the network).
 */
class Gate {
  private openIt!: () => void;
  private readonly opened = new Promise<void>((resolve) => (this.openIt = resolve));

  open(): void {
    this.openIt();
  }

  /** Resolves once the gate is open; rejects when the handler's signal aborts first. */
  pass(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      void this.opened.then(resolve);
    });
  }
}

describe("worker against a fake gateway", () => {
  let gateway: FakeGateway;
  let proxy: FaultProxy;
  let dir: string;
  let logs: string[];
  let workers: LifelineWorker[];

  before(async () => {
    gateway = new FakeGateway(300);
    await gateway.start();
    gateway.apiKeys.add("secret");
  });
  after(() => gateway.close());

  beforeEach(async () => {
    proxy = new FaultProxy(gateway.port);
    await proxy.start();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifeline-worker-"));
    logs = [];
    workers = [];
    gateway.tasks.clear();
    gateway.calls.length = 0;
  });
  afterEach(async () => {
    for (const w of workers) w.stop("test over");
    await proxy.down();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function worker(handlers: Record<string, TaskHandler>, options: Partial<LifelineWorkerOptions> = {}) {
    const changes: StateChange[] = [];
    const w = new LifelineWorker({
      target: proxy.address,
      apiKey: "secret",
      handlers,
      name: options.name ?? `test-${workers.length}-${process.pid}`,
      journalDir: dir,
      leaseSeconds: 30,
      pollSeconds: 1,
      callTimeoutMs: 1_000,
      shutdownGraceMs: 2_000,
      retrySchedule: SCHEDULE,
      log: (level, message) => {
        logs.push(`${level}: ${message}`);
        if (process.env.LIFELINE_TEST_LOGS) process.stderr.write(`${new Date().toISOString()} ${level} [${w.name}] ${message}\n`);
      },
      onStateChange: (change) => changes.push(change),
      ...options,
    });
    workers.push(w);
    return { w, changes };
  }

  it("runs tasks: completes with the result, fails with TaskFailed, reports progress, sends the API key", async () => {
    const seen: { id: string; attempt: number; token: string }[] = [];
    const { w } = worker({
      "t.echo": async (ctx: TaskContext) => {
        seen.push({ id: ctx.taskId, attempt: ctx.attempt, token: ctx.fencingToken });
        await ctx.reportProgress(50, "half");
        return { echo: ctx.payload };
      },
      "t.fail": () => {
        throw new TaskFailed("DEMO_FAILURE", "always", { retryable: false, retryAfterMs: 100 });
      },
    }, { once: 3 });
    const a = gateway.enqueue("t.echo", { n: 1 });
    const b = gateway.enqueue("t.echo", { n: 2 });
    const f = gateway.enqueue("t.fail");
    const counters = await w.run();
    assert.equal(gateway.tasks.get(a)!.status, "completed");
    assert.equal(gateway.tasks.get(a)!.result, '{"echo":{"n":1}}');
    assert.equal(gateway.tasks.get(b)!.status, "completed");
    assert.equal(gateway.tasks.get(f)!.status, "failed");
    assert.equal(gateway.tasks.get(a)!.progress, 50);
    assert.deepEqual({ completed: counters.completed, failed: counters.failed, journaled: counters.journaled, refused: counters.refused }, { completed: 2, failed: 1, journaled: 0, refused: 0 });
    assert.equal(seen[0].attempt, 1);
    assert.ok(gateway.count("Registry.RegisterWorker") === 1 && gateway.count("Registry.DeregisterWorker") === 1);
    assert.ok(gateway.count("Registry.HeartbeatStream") >= 1, "heartbeats on the stream");
    assert.equal(gateway.count("Queue.ReleaseTask"), 0);
    for (const unary of ["Queue.LeaseTasks", "Queue.CompleteTasks", "Queue.FailTask", "Queue.ReportProgress"]) assert.equal(gateway.count(unary), 0, unary);
    assert.equal(gateway.count("Queue.Dispatch.complete"), 2);
    assert.equal(gateway.count("Queue.Dispatch.fail"), 1);
  });

  it("an outage while handlers finish: outcomes journaled, synced when the gateway is back — none lost, none run twice", async () => {
    const runs = new Map<string, number>();
    const outage = new Gate();
    const { w, changes } = worker({
      "t.steps": async (ctx) => {
        runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1);
        await outage.pass(ctx.signal);
        return { steps: 1 };
      },
    }, { maxTasks: 6 });
    const ids = Array.from({ length: 6 }, () => gateway.enqueue("t.steps"));
    const running = w.run();
    await eventually("all six running", () => runs.size === 6);
    await proxy.down();
    outage.open(); // the handlers finish during the outage
    await eventually("all six outcomes journaled", () => w.counters.journaled === 6);
    assert.equal(w.state, "offline");
    const journal = new Journal(dir, w.name);
    journal.load();
    assert.deepEqual(journal.entries.filter((e) => e.kind === "complete").map((e) => e.task_id).sort(), [...ids].sort());
    assert.ok(ids.every((id) => gateway.tasks.get(id)!.status === "running"), "nothing reached the queue");
    await wait(300); // offline a while: probes fail, nothing is leased
    await proxy.up();
    await eventually("all six completed", () => ids.every((id) => gateway.tasks.get(id)!.status === "completed"));
    await eventually("connected again", () => w.state === "connected");
    assert.ok(ids.every((id) => gateway.tasks.get(id)!.completions === 1));
    assert.ok([...runs.values()].every((n) => n === 1), "no task ran twice");
    const c = w.counters;
    assert.deepEqual({ journaled: c.journaled, replayed: c.replayed, completed: c.completed, refused: c.refused }, { journaled: 6, replayed: 6, completed: 6, refused: 0 });
    const path = changes.map((s) => s.to);
    for (const state of ["retrying", "offline", "syncing", "connected"]) assert.ok(path.includes(state as never), `went through ${state}: ${path}`);
    assert.ok(logs.some((l) => /connection \w+ → offline: /.test(l)), "a log line per transition");
    assert.equal(fs.readFileSync(journal.path, "utf8"), "", "the journal was compacted");
    w.stop();
    await running;
  });

  it("a black-holed network (connections open, nothing passes): outcomes are journaled after the window and synced when traffic flows again", async () => {
    const runs = new Map<string, number>();
    const outage = new Gate();
    const { w } = worker({
      "t.steps": async (ctx) => {
        runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1);
        await outage.pass(ctx.signal);
        return "done";
      },
    }, { maxTasks: 3 });
    const ids = Array.from({ length: 3 }, () => gateway.enqueue("t.steps"));
    const running = w.run();
    await eventually("all three running", () => runs.size === 3);
    proxy.blackHole(true);
    outage.open(); // the handlers finish inside the black hole
    await eventually("all three journaled", () => w.counters.journaled === 3, 20_000);
    assert.equal(w.state, "offline");
    proxy.blackHole(false);
    await eventually("all three completed", () => ids.every((id) => gateway.tasks.get(id)!.status === "completed"), 30_000);
    await eventually("connected again", () => w.state === "connected", 30_000);
    assert.ok(ids.every((id) => gateway.tasks.get(id)!.completions === 1));
    assert.ok([...runs.values()].every((n) => n === 1));
    w.stop();
    await running;
  });

  it("an outage longer than the lease: the late outcome is refused as stale and dropped; the next holder completes it once", async () => {
    const outage = new Gate();
    const { w } = worker({ "t.slow": async (ctx) => { await outage.pass(ctx.signal); return 1; } }, { leaseSeconds: 2 });
    const id = gateway.enqueue("t.slow");
    const running = w.run();
    await eventually("leased", () => gateway.tasks.get(id)!.status === "running");
    await proxy.down();
    outage.open(); // the handler finishes during the outage
    await eventually("journaled", () => w.counters.journaled === 1);
    const next = gateway.leaseToAnother(id); // the lease ran out during the outage and another worker took the task
    await proxy.up();
    await eventually("synced", () => w.state === "connected" && w.journal.size === 0);
    assert.equal(w.counters.refused, 1);
    assert.equal(w.counters.completed, 0);
    assert.equal(logs.filter((l) => l.includes(`task ${id}`) && l.includes("refused")).length, 1, "logged once");
    gateway.completeAs(id, next);
    assert.equal(gateway.tasks.get(id)!.completions, 1);
    w.stop();
    await running;
  });

  it("a restart replays the journal before registering and leasing; the task is completed without running again", async () => {
    const id = gateway.enqueue("t.steps");
    const token = gateway.leaseToAnother(id, "worker-restarted");
    const name = `restarted-${process.pid}`;
    const earlier = new Journal(dir, name);
    earlier.append({ kind: "progress", task_id: id, fencing_token: String(token), progress: { percent: 100, message: "done" } });
    earlier.append({ kind: "complete", task_id: id, fencing_token: String(token), result: { steps: 5 } });
    fs.appendFileSync(earlier.path, '{"seq":3,"kind":"compl'); // killed in the middle of an append
    let ran = 0;
    const { w } = worker({ "t.steps": () => void (ran += 1) }, { name, once: 1 });
    const other = gateway.enqueue("t.steps");
    await w.run();
    const first = (m: string) => gateway.calls.indexOf(m);
    assert.ok(first("Queue.CompleteTasks") >= 0 && first("Queue.CompleteTasks") < first("Registry.RegisterWorker"), gateway.calls.join(" "));
    assert.ok(first("Queue.CompleteTasks") < first("Queue.Dispatch"));
    assert.equal(gateway.count("Queue.LeaseTasks"), 0);
    assert.equal(gateway.tasks.get(id)!.status, "completed");
    assert.equal(gateway.tasks.get(id)!.result, '{"steps":5}');
    assert.equal(gateway.tasks.get(other)!.status, "completed");
    assert.equal(ran, 1, "only the other task ran");
    assert.equal(w.counters.replayed, 1);
    assert.ok(logs.some((l) => l.includes("torn last line")));
  });

  it("a restart while the gateway is still down keeps the journal, registers when it returns, then syncs before leasing", async () => {
    const id = gateway.enqueue("t.steps");
    const token = gateway.leaseToAnother(id, "w");
    const name = `late-${process.pid}`;
    new Journal(dir, name).append({ kind: "complete", task_id: id, fencing_token: String(token), result: null });
    await proxy.down();
    const { w } = worker({ "t.steps": () => 1 }, { name });
    const running = w.run();
    await eventually("offline", () => w.state === "offline");
    assert.equal(w.journal.size, 1);
    await proxy.up();
    await eventually("completed", () => gateway.tasks.get(id)!.status === "completed");
    await eventually("connected", () => w.state === "connected");
    await eventually("a dispatch stream", () => gateway.count("Queue.Dispatch.open") > 0);
    assert.ok(gateway.calls.indexOf("Queue.CompleteTasks") < gateway.calls.indexOf("Queue.Dispatch"), gateway.calls.join(" "));
    w.stop();
    await running;
  });

  it("a cancel_task command aborts that handler and reports no outcome", async () => {
    let aborted: unknown;
    const { w } = worker({
      "t.long": async (ctx) => {
        try {
          await wait(10_000, ctx.signal);
        } catch (error) {
          aborted = error;
          throw error;
        }
      },
    });
    const id = gateway.enqueue("t.long");
    const running = w.run();
    await eventually("running", () => w.runningTaskIds.includes(id));
    await eventually("heartbeat stream open", () => gateway.count("Registry.HeartbeatStream.beat") > 0);
    gateway.command({ cancelTask: { taskId: id, reason: "operator" }, drain: undefined });
    await eventually("aborted", () => aborted !== undefined);
    await eventually("abandoned", () => w.counters.abandoned === 1);
    assert.match(String((aborted as Error).message), /cancelled: operator/);
    assert.equal(gateway.count("Queue.CompleteTasks") + gateway.count("Queue.FailTask"), 0);
    w.stop();
    await running;
  });

  it("a drain command: running handlers finish, nothing more is leased, the worker stops", async () => {
    const { w } = worker({ "t.x": async (ctx) => { await wait(400, ctx.signal); return "ok"; } });
    const first = gateway.enqueue("t.x");
    const running = w.run();
    await eventually("running", () => w.runningTaskIds.includes(first));
    gateway.command({ drain: { reason: "maintenance" }, cancelTask: undefined });
    await eventually("draining", () => logs.some((l) => l.includes("draining (maintenance)")));
    const second = gateway.enqueue("t.x");
    await running;
    assert.equal(gateway.tasks.get(first)!.status, "completed");
    assert.equal(gateway.tasks.get(second)!.status, "pending");
  });

  it("stopping: handlers are told, waited for up to the grace period, and tasks still held are released", async () => {
    const { w } = worker({
      "t.stubborn": async () => { await wait(5_000); return "late"; }, // ignores its signal
      "t.polite": async (ctx) => { await wait(5_000, ctx.signal); return "never"; },
    }, { shutdownGraceMs: 300, maxTasks: 2 });
    const stubborn = gateway.enqueue("t.stubborn");
    const polite = gateway.enqueue("t.polite");
    const running = w.run();
    await eventually("both running", () => w.runningTaskIds.length === 2);
    w.stop("test");
    const counters = await running;
    assert.equal(counters.released, 2);
    assert.equal(gateway.tasks.get(stubborn)!.status, "pending");
    assert.equal(gateway.tasks.get(polite)!.status, "pending");
    const order = gateway.calls.filter((c) => c.includes("elease") || c === "Registry.DeregisterWorker" || c === "Queue.Dispatch.capacity");
    // 0 slots first (nothing more is pushed), then the releases on the stream, then the deregistration.
    assert.deepEqual(order, ["Queue.Dispatch.capacity", "Queue.Dispatch.release", "Queue.Dispatch.release", "Registry.DeregisterWorker"]);
  });
});

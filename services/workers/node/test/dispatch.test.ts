/**
 * The worker on the queue's dispatch stream (QueueService.Dispatch), against the in-process fake gateway (a real
 * grpc-js server): the stream is the default (no LeaseTasks, no unary outcome calls while it works); the slots given to
 * the stream bound what is pushed (maxTasks, `once`), and a task whose lease is lost frees its slot; silent handlers'
 * leases are kept with `extend_lease` on the stream; a stream cut mid-run loses and doubles nothing (an outcome
 * applied but unanswered is sent again and the queue takes the repeat without completing twice); a completion refused
 * as bad input is dropped while the rest of its batch is delivered; stop tells the stream 0 slots and releases on it;
 * a drain pauses it; `dispatchStream: false` and a queue without the stream (UNIMPLEMENTED) lease with long polls.
 */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { LifelineWorker, LifelineWorkerOptions, TaskContext, TaskHandler } from "../src";
import { FakeGateway, eventually } from "./support/fake-gateway";

const SCHEDULE = { immediateRetries: 2, baseDelayMs: 20, maxDelayMs: 200, giveUpAfterMs: 1_000 };
const UNARY_TASK_CALLS = ["LeaseTasks", "CompleteTasks", "FailTask", "ReportProgress", "ExtendLease", "ReleaseTask"].map((m) => `Queue.${m}`);

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

describe("worker on the dispatch stream", () => {
  let gateway: FakeGateway;
  let dir: string;
  let logs: string[];
  let workers: LifelineWorker[];

  before(async () => {
    gateway = new FakeGateway(300);
    await gateway.start();
  });
  after(() => gateway.close());

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifeline-dispatch-"));
    logs = [];
    workers = [];
    gateway.tasks.clear();
    gateway.calls.length = 0;
    gateway.slotCounts.length = 0;
    gateway.dispatchSupported = true;
    gateway.cutBeforeAck = false;
    gateway.maxResult = 1 << 20;
  });
  afterEach(async () => {
    for (const w of workers) w.stop("test over");
    gateway.cutStreams();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function worker(handlers: Record<string, TaskHandler>, options: Partial<LifelineWorkerOptions> = {}): LifelineWorker {
    const w = new LifelineWorker({
      target: `http://127.0.0.1:${gateway.port}`,
      handlers,
      name: `dispatch-${workers.length}-${process.pid}`,
      journalDir: dir,
      leaseSeconds: 30,
      pollSeconds: 1,
      callTimeoutMs: 1_000,
      shutdownGraceMs: 2_000,
      retrySchedule: SCHEDULE,
      log: (level, message) => {
        logs.push(`${level}: ${message}`);
        if (process.env.LIFELINE_TEST_LOGS) process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
      },
      ...options,
    });
    workers.push(w);
    return w;
  }

  function unaryTaskCalls(): string[] {
    return gateway.calls.filter((c) => UNARY_TASK_CALLS.includes(c));
  }

  /** A handler that counts handlers running at once, reports progress and completes after `ms`. */
  function counting(ms: number) {
    const state = { now: 0, most: 0, runs: new Map<string, number>() };
    const handler = async (ctx: TaskContext) => {
      state.now += 1;
      state.most = Math.max(state.most, state.now);
      state.runs.set(ctx.taskId, (state.runs.get(ctx.taskId) ?? 0) + 1);
      try {
        await ctx.reportProgress(50, "half way");
        await wait(ms);
        return { ran: ctx.taskId };
      } finally {
        state.now -= 1;
      }
    };
    return { handler, state };
  }

  it("is the default: tasks, outcomes and progress go on the stream; nothing is leased by long poll", async () => {
    const { handler, state } = counting(100);
    const ids = Array.from({ length: 6 }, () => gateway.enqueue("t.count"));
    const counters = await worker({ "t.count": handler }, { maxTasks: 2, once: 6 }).run();
    for (const id of ids) {
      const task = gateway.tasks.get(id)!;
      assert.deepEqual([task.status, task.completions, task.pushes, task.progress], ["completed", 1, 1, 50]);
    }
    assert.deepEqual(unaryTaskCalls(), []);
    assert.equal(gateway.count("Queue.Dispatch"), 1);
    assert.equal(gateway.count("Queue.Dispatch.complete"), 6);
    assert.ok(gateway.count("Queue.Dispatch.progress") >= 6);
    assert.ok(state.most <= 2, `${state.most} handlers at once`);
    assert.equal(gateway.slotCounts[0], 2);
    assert.deepEqual(gateway.slotCounts, [...gateway.slotCounts].sort((a, b) => b - a), "fewer slots as `once` nears");
    assert.equal(gateway.slotCounts.at(-1), 0);
    assert.deepEqual([counters.completed, counters.failed, counters.refused], [6, 0, 0]);
  });

  it("`once` takes no more tasks than asked, even as outcomes free slots", async () => {
    const { handler } = counting(20);
    const ids = Array.from({ length: 8 }, () => gateway.enqueue("t.count"));
    await worker({ "t.count": handler }, { maxTasks: 4, once: 3 }).run();
    const tasks = ids.map((id) => gateway.tasks.get(id)!);
    assert.equal(tasks.reduce((n, t) => n + t.pushes, 0), 3, `slot counts ${gateway.slotCounts}`);
    assert.equal(tasks.filter((t) => t.status === "completed").length, 3);
    assert.equal(tasks.filter((t) => t.status === "pending").length, 5);
    assert.equal(gateway.slotCounts[0], 3);
    assert.equal(gateway.count("Queue.Dispatch.release") + gateway.count("Queue.ReleaseTask"), 0);
  });

  it("keeps a silent handler's lease with extend_lease on the stream", async () => {
    const id = gateway.enqueue("t.silent");
    const maintenance = setInterval(() => gateway.expireLeases(), 100);
    try {
      await worker({ "t.silent": async () => { await wait(3_500); return {}; } }, { leaseSeconds: 1.5, once: 1 }).run();
    } finally {
      clearInterval(maintenance);
    }
    const task = gateway.tasks.get(id)!;
    assert.deepEqual([task.status, task.pushes, task.completions], ["completed", 1, 1]);
    assert.ok(gateway.count("Queue.Dispatch.extendLease") >= 2, gateway.calls.join(" "));
    assert.deepEqual(unaryTaskCalls(), []);
  });

  it("a stream cut mid-run loses nothing and completes each task once; the new stream gets the slots back", async () => {
    let open = false;
    const runs = new Map<string, number>();
    const w = worker({
      "t.gated": async (ctx) => {
        runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1);
        while (!open) {
          await ctx.reportProgress(10, "waiting");
          await wait(50);
        }
        return { ran: ctx.taskId };
      },
    }, { maxTasks: 5, leaseSeconds: 3 });
    const ids = Array.from({ length: 4 }, () => gateway.enqueue("t.gated"));
    const running = w.run();
    await eventually("four running", () => runs.size === 4);
    gateway.cutStreams();
    await eventually("a new stream", () => gateway.count("Queue.Dispatch.open") >= 2);
    const secondOpen = gateway.calls.lastIndexOf("Queue.Dispatch.open");
    await wait(300);
    open = true;
    await eventually("all completed", () => ids.every((id) => gateway.tasks.get(id)!.status === "completed"));
    for (const id of ids) assert.deepEqual([gateway.tasks.get(id)!.completions, gateway.tasks.get(id)!.pushes, runs.get(id)], [1, 1, 1]);
    assert.ok(gateway.calls.slice(secondOpen).includes("Queue.Dispatch.progress"), "progress (and leases) on the new stream");
    assert.deepEqual(gateway.slotCounts.slice(0, 2), [5, 1], "the new stream: 1 free slot while the old stream's four run");
    await eventually("the slots back", () => gateway.slotCounts.at(-1) === 5);
    assert.equal(gateway.count("Queue.LeaseTasks"), 0);
    w.stop();
    const counters = await running;
    assert.deepEqual([counters.completed, counters.refused, counters.journaled], [4, 0, 0]);
  });

  it("an outcome the queue applied but did not answer before the stream broke is sent again and counted once", async () => {
    gateway.cutBeforeAck = true;
    const id = gateway.enqueue("t.echo");
    const counters = await worker({ "t.echo": () => "done" }, { once: 1 }).run();
    const task = gateway.tasks.get(id)!;
    assert.deepEqual([task.status, task.completions], ["completed", 1]);
    assert.equal(gateway.count("Queue.Dispatch.complete") + gateway.count("Queue.CompleteTasks"), 2, gateway.calls.join(" "));
    assert.deepEqual([counters.completed, counters.refused, counters.journaled], [1, 0, 0]);
  });

  it("a completion refused as bad input is dropped; the others of its batch are delivered", async () => {
    gateway.maxResult = 1_000;
    let arrived = 0;
    let release!: () => void;
    const together = new Promise<void>((resolve) => (release = resolve));
    const ids = [10, 5_000, 10].map((size) => gateway.enqueue("t.sized", { size }));
    const counters = await worker({
      "t.sized": async (ctx) => {
        if (++arrived === 3) release();
        await together; // the three finish together: one batch, three `complete` requests
        return { blob: "x".repeat((ctx.payload as { size: number }).size) };
      },
    }, { once: 3 }).run();
    assert.deepEqual(ids.map((id) => gateway.tasks.get(id)!.status), ["completed", "running", "completed"]);
    assert.deepEqual([counters.completed, counters.refused, counters.journaled], [2, 1, 0]);
    const sent = gateway.calls.filter((c) => c === "Queue.Dispatch.complete" || c === "Queue.CompleteTasks");
    assert.ok(sent.length <= 4, gateway.calls.join(" "));
  });

  it("a task whose lease is lost frees its slot on the stream", async () => {
    const runs: string[] = [];
    const w = worker({
      "t.waits": async (ctx) => {
        runs.push(ctx.taskId);
        await wait(20_000, ctx.signal);
      },
    }, { maxTasks: 1, leaseSeconds: 1.2 });
    const first = gateway.enqueue("t.waits");
    const running = w.run();
    await eventually("the first running", () => runs.includes(first));
    const second = gateway.enqueue("t.waits");
    gateway.leaseToAnother(first); // the lease keeper's next extension is refused
    await eventually("the lost task's slot freed: the second pushed", () => runs.includes(second), 10_000);
    assert.equal(w.counters.abandoned, 1);
    assert.equal(gateway.tasks.get(first)!.releases, 0, "the release was refused: it only freed the slot");
    assert.ok(gateway.calls.includes("Queue.Dispatch.release"));
    w.stop();
    await running;
  });

  it("stopping tells the stream 0 slots, releases running tasks on it and half-closes it", async () => {
    const w = worker({ "t.polite": async (ctx) => { await wait(20_000, ctx.signal); } }, { maxTasks: 2 });
    const ids = [gateway.enqueue("t.polite"), gateway.enqueue("t.polite")];
    const running = w.run();
    await eventually("both running", () => w.runningTaskIds.length === 2);
    w.stop("test");
    const counters = await running;
    assert.equal(counters.released, 2);
    assert.ok(ids.every((id) => gateway.tasks.get(id)!.status === "pending" && gateway.tasks.get(id)!.releases === 1));
    assert.ok(gateway.calls.indexOf("Queue.Dispatch.capacity") < gateway.calls.indexOf("Queue.Dispatch.release"), gateway.calls.join(" "));
    assert.equal(gateway.slotCounts.at(-1), 0);
    assert.equal(gateway.count("Queue.ReleaseTask"), 0);
    await eventually("the stream ended", () => gateway.openStreams === 0, 5_000);
  });

  it("a drain pauses the stream, lets running handlers finish and stops", async () => {
    const w = worker({ "t.x": async () => { await wait(600); return "ok"; } });
    const first = gateway.enqueue("t.x");
    const running = w.run();
    await eventually("running", () => w.runningTaskIds.includes(first));
    await eventually("heartbeat stream open", () => gateway.count("Registry.HeartbeatStream.beat") > 0);
    gateway.command({ drain: { reason: "maintenance" }, cancelTask: undefined });
    await eventually("paused", () => gateway.slotCounts.includes(0));
    const later = gateway.enqueue("t.x");
    await running;
    assert.equal(gateway.tasks.get(first)!.status, "completed");
    assert.deepEqual([gateway.tasks.get(later)!.status, gateway.tasks.get(later)!.pushes], ["pending", 0]);
  });

  it("dispatchStream: false leases with long polls", async () => {
    const ids = [gateway.enqueue("t.echo"), gateway.enqueue("t.echo")];
    const counters = await worker({ "t.echo": () => "done" }, { dispatchStream: false, once: 2 }).run();
    assert.ok(ids.every((id) => gateway.tasks.get(id)!.status === "completed" && gateway.tasks.get(id)!.completions === 1));
    assert.equal(gateway.count("Queue.Dispatch"), 0);
    assert.ok(gateway.count("Queue.LeaseTasks") >= 1);
    assert.ok(gateway.count("Queue.CompleteTasks") >= 1);
    assert.equal(counters.completed, 2);
  });

  it("a queue without the stream (UNIMPLEMENTED) makes the worker lease with long polls", async () => {
    gateway.dispatchSupported = false;
    const ids = [gateway.enqueue("t.echo"), gateway.enqueue("t.echo")];
    const counters = await worker({ "t.echo": () => "done" }, { once: 2 }).run();
    assert.ok(ids.every((id) => gateway.tasks.get(id)!.status === "completed" && gateway.tasks.get(id)!.completions === 1));
    assert.equal(gateway.count("Queue.Dispatch"), 1, "tried once, then never again");
    assert.ok(gateway.count("Queue.LeaseTasks") >= 1);
    assert.equal(counters.completed, 2);
    assert.ok(logs.some((l) => l.includes("no dispatch stream") && l.includes("UNIMPLEMENTED")), logs.join("\n"));
  });
});

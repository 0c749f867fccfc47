import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { status } from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ConnectionTracker } from "../src/connection";
import { newCounters } from "../src/counters";
import { Journal } from "../src/journal";
import { Completion, CompletionAnswer, Failure, Outbox, OutboxApi, ProgressReport } from "../src/outbox";

const unavailable = () => Object.assign(new Error("UNAVAILABLE"), { code: status.UNAVAILABLE, details: "connect ECONNREFUSED" });
const stale = () => Object.assign(new Error("FAILED_PRECONDITION"), { code: status.FAILED_PRECONDITION, details: "stale fencing token" });

/** A fake queue: `down` makes every call fail with UNAVAILABLE; `refuse` ids are refused as stale. */
class FakeApi implements OutboxApi {
  down = false;
  failNext = 0;
  refuse = new Set<string>();
  calls: string[] = [];
  completed: Completion[] = [];
  failed: Failure[] = [];
  progress: ProgressReport[] = [];

  private gate(what: string) {
    this.calls.push(what);
    if (this.down) throw unavailable();
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw unavailable();
    }
  }

  async completeTasks(completions: Completion[]): Promise<CompletionAnswer[]> {
    this.gate(`complete:${completions.map((c) => c.taskId).join(",")}`);
    return completions.map((c) => {
      if (this.refuse.has(c.taskId)) return { taskId: c.taskId, accepted: false, code: 9, reason: "STALE_FENCING_TOKEN", message: "stale" };
      this.completed.push(c);
      return { taskId: c.taskId, accepted: true, code: 0, reason: "", message: "" };
    });
  }

  async failTask(failure: Failure): Promise<void> {
    this.gate(`fail:${failure.taskId}`);
    if (this.refuse.has(failure.taskId)) throw stale();
    this.failed.push(failure);
  }

  async reportProgress(report: ProgressReport): Promise<void> {
    this.gate(`progress:${report.taskId}`);
    this.progress.push(report);
  }
}

describe("outbox", () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifeline-outbox-"))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function setup(schedule = { immediateRetries: 2, baseDelayMs: 5, maxDelayMs: 20, giveUpAfterMs: 150 }) {
    const api = new FakeApi();
    const logs: string[] = [];
    const tracker = new ConnectionTracker({ giveUpAfterMs: schedule.giveUpAfterMs, log: (l) => logs.push(l) });
    const journal = new Journal(dir, "w");
    const counters = newCounters();
    const progress = new Map<string, { percent: number; message: string }>();
    const settled: string[] = [];
    const outbox = new Outbox({
      api,
      tracker,
      journal,
      counters,
      log: (level, message) => logs.push(`${level}: ${message}`),
      latestProgress: (id) => progress.get(id),
      onSettled: (id, _token, how, fromJournal) => settled.push(`${id}:${how}${fromJournal ? ":journal" : ""}`),
      schedule,
    });
    return { api, tracker, journal, counters, outbox, logs, progress, settled };
  }

  it("a single dropped connection costs nothing: the immediate retries deliver it, the state never leaves connected", async () => {
    const { api, outbox, counters, tracker, settled } = setup();
    api.failNext = 2;
    await outbox.deliverCompletions([{ taskId: "a", fencingToken: "1", result: "{}" }]);
    assert.equal(tracker.state, "connected");
    assert.equal(counters.retries, 2);
    assert.equal(counters.completed, 1);
    assert.deepEqual(settled, ["a:delivered"]);
  });

  it("retries with backoff while retrying, and delivers when the gateway answers within the window", async () => {
    const { api, outbox, counters, tracker } = setup({ immediateRetries: 2, baseDelayMs: 5, maxDelayMs: 20, giveUpAfterMs: 5_000 });
    api.down = true;
    const delivering = outbox.deliverFailure({ taskId: "f", fencingToken: "3", error: { code: "E", message: "m", retryable: false } });
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(tracker.state, "retrying");
    api.down = false;
    assert.equal(await delivering, "delivered");
    assert.equal(tracker.state, "connected");
    assert.equal(counters.failed, 1);
    assert.ok(counters.retries >= 3);
    assert.equal(counters.journaled, 0);
  });

  it("journals (with the task's latest progress) once the window has passed, and is offline; later outcomes go straight to the journal", async () => {
    const { api, outbox, counters, tracker, journal, progress } = setup();
    api.down = true;
    progress.set("a", { percent: 60, message: "step 3 of 5" });
    const started = Date.now();
    const settled = await outbox.deliverCompletions([{ taskId: "a", fencingToken: "1", result: '{"steps":5}' }]);
    assert.equal(settled.get("a"), "journaled");
    assert.ok(Date.now() - started >= 150, "retried for the whole window");
    assert.equal(tracker.state, "offline");
    assert.equal(counters.journaled, 1);
    const calls = api.calls.length;
    assert.equal(await outbox.deliverFailure({ taskId: "b", fencingToken: "2", error: { code: "E", message: "m", retryable: true } }), "journaled");
    assert.equal(api.calls.length, calls, "no call while offline");
    assert.deepEqual(
      journal.entries.map((e) => [e.kind, e.task_id]),
      [["progress", "a"], ["complete", "a"], ["fail", "b"]],
    );
    assert.deepEqual(journal.entries[1].kind === "complete" && journal.entries[1].result, { steps: 5 });
  });

  it("a final refusal is logged once, counted, never retried", async () => {
    const { api, outbox, counters, logs, tracker } = setup();
    api.refuse.add("s");
    assert.equal(await outbox.deliverFailure({ taskId: "s", fencingToken: "1", error: { code: "E", message: "m", retryable: false } }), "refused");
    assert.equal(api.calls.length, 1);
    assert.equal(counters.refused, 1);
    assert.equal(counters.retries, 0);
    assert.equal(logs.filter((l) => l.includes("task s")).length, 1);
    assert.equal(tracker.state, "connected");
  });

  it("a refusal of one completion in a batch does not affect the others", async () => {
    const { api, outbox, counters } = setup();
    api.refuse.add("b");
    const settled = await outbox.deliverCompletions([
      { taskId: "a", fencingToken: "1", result: "" },
      { taskId: "b", fencingToken: "1", result: "" },
      { taskId: "c", fencingToken: "1", result: "" },
    ]);
    assert.deepEqual([...settled], [["a", "delivered"], ["b", "refused"], ["c", "delivered"]]);
    assert.equal(api.calls.length, 1, "one CompleteTasks");
    assert.equal(counters.completed, 2);
    assert.equal(counters.refused, 1);
  });

  it("sync replays in order (completions batched), drops final refusals, and is connected when the journal is empty", async () => {
    const { api, outbox, counters, tracker, journal, settled } = setup();
    journal.append({ kind: "complete", task_id: "a", fencing_token: "1", result: { n: 1 } });
    journal.append({ kind: "complete", task_id: "b", fencing_token: "1", result: null });
    journal.append({ kind: "progress", task_id: "c", fencing_token: "4", progress: { percent: 50, message: "half" } });
    journal.append({ kind: "fail", task_id: "c", fencing_token: "4", error: { code: "E", message: "m", retryable: true } });
    journal.append({ kind: "complete", task_id: "d", fencing_token: "2", result: 7 });
    api.refuse.add("d");
    tracker.startSync("restart");
    await outbox.sync();
    // c's progress goes ahead of the completions of a and b (its own failure still follows it)
    assert.deepEqual(api.calls, ["progress:c", "complete:a,b", "fail:c", "complete:d"]);
    assert.deepEqual(api.completed.map((c) => [c.taskId, c.result]), [["a", '{"n":1}'], ["b", ""]]);
    assert.equal(tracker.state, "connected");
    assert.equal(journal.size, 0);
    assert.equal(fs.readFileSync(journal.path, "utf8"), "");
    assert.deepEqual(counters, { ...counters, replayed: 4, completed: 2, failed: 1, refused: 1 });
    assert.deepEqual(settled, ["a:delivered:journal", "b:delivered:journal", "c:delivered:journal", "d:refused:journal"]);
  });

  it("completions journaled with their progress (progress, complete, progress, complete …) still go out as one CompleteTasks", async () => {
    const { api, outbox, tracker, journal } = setup();
    for (const id of ["a", "b", "c"]) {
      journal.append({ kind: "progress", task_id: id, fencing_token: "1", progress: { percent: 90, message: "" } });
      journal.append({ kind: "complete", task_id: id, fencing_token: "1", result: null });
    }
    tracker.startSync("restart");
    await outbox.sync();
    assert.deepEqual(api.calls, ["progress:a", "progress:b", "progress:c", "complete:a,b,c"]);
    assert.equal(journal.size, 0);
  });

  it("a transient failure during sync keeps the rest and goes back offline; the next sync finishes it", async () => {
    const { api, outbox, tracker, journal } = setup();
    journal.append({ kind: "complete", task_id: "a", fencing_token: "1", result: null });
    journal.append({ kind: "fail", task_id: "b", fencing_token: "1", error: { code: "E", message: "m", retryable: false } });
    journal.append({ kind: "complete", task_id: "c", fencing_token: "1", result: null });
    tracker.startSync("restart");
    const original = api.failTask.bind(api);
    api.failTask = async (f) => {
      api.calls.push(`fail:${f.taskId}`);
      throw unavailable();
    };
    await outbox.sync();
    assert.equal(tracker.state, "offline");
    assert.deepEqual(journal.entries.map((e) => e.task_id), ["b", "c"], "a was delivered; b and c are kept in order");
    const reloaded = new Journal(dir, "w");
    reloaded.load();
    assert.deepEqual(reloaded.entries.map((e) => e.task_id), ["b", "c"], "the file was rewritten");
    api.failTask = original;
    tracker.succeeded("probe");
    assert.equal(tracker.state, "syncing");
    await outbox.sync();
    assert.equal(tracker.state, "connected");
    assert.equal(journal.size, 0);
    assert.deepEqual(api.completed.map((c) => c.taskId), ["a", "c"]);
  });

  it("outcomes journaled during a sync are replayed by it too", async () => {
    const { api, outbox, tracker, journal } = setup();
    journal.append({ kind: "complete", task_id: "a", fencing_token: "1", result: null });
    tracker.startSync("restart");
    const original = api.completeTasks.bind(api);
    let first = true;
    api.completeTasks = async (items) => {
      if (first) {
        first = false;
        await outbox.deliverCompletions([{ taskId: "late", fencingToken: "1", result: "" }]); // journaled: syncing
      }
      return original(items);
    };
    await outbox.sync();
    assert.deepEqual(api.completed.map((c) => c.taskId), ["a", "late"]);
    assert.equal(tracker.state, "connected");
  });

  it("calls that fail slowly (deadlines in a black-holed network) give up once the window has passed, immediate retries included", async () => {
    const { api, outbox, counters, tracker } = setup({ immediateRetries: 2, baseDelayMs: 5, maxDelayMs: 20, giveUpAfterMs: 150 });
    api.failTask = async (f) => {
      api.calls.push(`fail:${f.taskId}`);
      await new Promise((r) => setTimeout(r, 100));
      throw Object.assign(new Error("DEADLINE_EXCEEDED"), { code: status.DEADLINE_EXCEEDED, details: "Deadline exceeded" });
    };
    const started = Date.now();
    assert.equal(await outbox.deliverFailure({ taskId: "slow", fencingToken: "1", error: { code: "E", message: "", retryable: true } }), "journaled");
    assert.equal(api.calls.length, 2, "the second failure ended the window (the first failed from its start)");
    assert.ok(Date.now() - started < 400);
    assert.equal(counters.journaled, 1);
    assert.equal(tracker.state, "offline");
  });

  it("stopping journals an outcome that fails after its immediate retries, without backoff", async () => {
    const { api, outbox, counters } = setup({ immediateRetries: 2, baseDelayMs: 1000, maxDelayMs: 5000, giveUpAfterMs: 60_000 });
    api.down = true;
    const stopping = outbox.stop();
    const started = Date.now();
    assert.equal(await outbox.deliverFailure({ taskId: "x", fencingToken: "1", error: { code: "E", message: "", retryable: true } }), "journaled");
    assert.ok(Date.now() - started < 500);
    await stopping;
    assert.equal(counters.journaled, 1);
  });
});

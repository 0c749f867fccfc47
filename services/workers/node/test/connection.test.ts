import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { ConnectionTracker, StateChange } from "../src/connection";

function tracker() {
  let now = 0;
  const lines: string[] = [];
  const changes: StateChange[] = [];
  const t = new ConnectionTracker({ now: () => now, log: (line) => lines.push(line) });
  t.on("stateChange", (c: StateChange) => changes.push(c));
  return { t, lines, changes, advance: (ms: number) => (now += ms) };
}

describe("connection state machine", () => {
  it("connected → retrying → offline → syncing → connected, one log line and one event per transition", () => {
    const { t, lines, changes, advance } = tracker();
    assert.equal(t.state, "connected");
    t.failed("UNAVAILABLE: connection refused");
    assert.equal(t.state, "retrying");
    advance(9_999);
    t.failed("UNAVAILABLE: connection refused");
    assert.equal(t.state, "retrying", "not yet 10 s since the first failure");
    advance(1);
    t.failed("UNAVAILABLE: connection refused");
    assert.equal(t.state, "offline");
    t.failed("UNAVAILABLE: still down");
    assert.equal(t.state, "offline");
    t.succeeded("probe: ExtendLease answered");
    assert.equal(t.state, "syncing");
    t.synced();
    assert.equal(t.state, "connected");
    assert.deepEqual(changes.map((c) => `${c.from}>${c.to}`), ["connected>retrying", "retrying>offline", "offline>syncing", "syncing>connected"]);
    assert.deepEqual(lines, [
      "connection connected → retrying: UNAVAILABLE: connection refused",
      "connection retrying → offline: UNAVAILABLE: connection refused",
      "connection offline → syncing: probe: ExtendLease answered",
      "connection syncing → connected: journal empty",
    ]);
  });

  it("a success while retrying is connected again, and the 10 s start over", () => {
    const { t, advance } = tracker();
    t.failed("x");
    advance(8_000);
    t.succeeded();
    assert.equal(t.state, "connected");
    t.failed("x");
    advance(8_000);
    t.failed("x");
    assert.equal(t.state, "retrying");
  });

  it("a transient failure while syncing is offline again; an outcome giving up is offline at once", () => {
    const { t } = tracker();
    t.giveUp("CompleteTasks: UNAVAILABLE (retried for 10.0 s)");
    assert.equal(t.state, "offline");
    t.succeeded();
    assert.equal(t.state, "syncing");
    t.failed("sync: UNAVAILABLE");
    assert.equal(t.state, "offline");
    assert.equal(t.canSend, false);
  });

  it("a restart with a journal starts syncing; synced only leaves syncing", () => {
    const { t } = tracker();
    t.synced();
    assert.equal(t.state, "connected");
    t.startSync("journal holds 3 entries");
    assert.equal(t.state, "syncing");
    t.succeeded();
    assert.equal(t.state, "syncing", "a success while syncing does not end the sync");
    assert.equal(t.canSend, false);
    t.synced();
    assert.equal(t.canSend, true);
  });

  it("waitFor resolves on the wanted state", async () => {
    const { t } = tracker();
    t.giveUp("down");
    let resolved = false;
    const waiting = t.waitFor(["connected"]).then(() => (resolved = true));
    t.succeeded();
    await new Promise((r) => setImmediate(r));
    assert.equal(resolved, false);
    t.synced();
    await waiting;
    assert.equal(resolved, true);
  });
});

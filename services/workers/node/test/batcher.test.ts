import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { Batcher } from "../src/batcher";

describe("completion batcher", () => {
  it("sends what finished together as one batch within 5 ms", async () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>(async (items) => void batches.push(items));
    const started = Date.now();
    await Promise.all([batcher.add(1), batcher.add(2), batcher.add(3)]);
    assert.deepEqual(batches, [[1, 2, 3]]);
    assert.ok(Date.now() - started < 100);
  });

  it("sends at once when 100 are waiting, and never more than 100 in a batch", async () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>(async (items) => void batches.push(items), { maxDelayMs: 60_000 });
    const adds = Array.from({ length: 250 }, (_, i) => batcher.add(i));
    await Promise.all(adds.slice(0, 200)); // 2 full batches went out without waiting for the timer
    assert.deepEqual(batches.map((b) => b.length), [100, 100]);
    await batcher.flush();
    await Promise.all(adds);
    assert.deepEqual(batches.map((b) => b.length), [100, 100, 50]);
    assert.deepEqual(batches.flat(), Array.from({ length: 250 }, (_, i) => i));
  });

  it("add resolves only after its batch was handled; flush waits for batches under way", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const batcher = new Batcher<string>(() => gate);
    let done = false;
    const adding = batcher.add("a").then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false);
    const flushing = batcher.flush();
    release();
    await flushing;
    await adding;
    assert.equal(done, true);
  });

  it("a failed send rejects the adds of that batch", async () => {
    const batcher = new Batcher<string>(async () => {
      throw new Error("boom");
    });
    await assert.rejects(batcher.add("x"), /boom/);
  });
});

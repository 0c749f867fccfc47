import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { RetrySchedule, backoffCeiling, backoffDelay } from "../src/backoff";

describe("backoff", () => {
  it("is the contract's schedule", () => {
    assert.deepEqual({ ...RetrySchedule }, { immediateRetries: 2, baseDelayMs: 100, maxDelayMs: 5000, giveUpAfterMs: 10000 });
  });

  it("ceilings double from 100 ms and stop at 5 s", () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 50].map((n) => backoffCeiling(n)), [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it("full jitter: every wait lies in [0, ceiling)", () => {
    for (let step = 0; step < 12; step++) {
      assert.equal(backoffDelay(step, () => 0), 0);
      assert.equal(backoffDelay(step, () => 0.999999), Math.floor(0.999999 * backoffCeiling(step)));
      for (let i = 0; i < 200; i++) {
        const wait = backoffDelay(step);
        assert.ok(wait >= 0 && wait < backoffCeiling(step), `step ${step}: ${wait}`);
      }
    }
  });

  it("the waits of one outage fit in the 10 s window with a few attempts", () => {
    // worst case (random → 1): 100+200+400+800+1600+3200 = 6300 ms, then 5 s waits would pass 10 s
    let total = 0;
    let steps = 0;
    while (total + backoffCeiling(steps) <= RetrySchedule.giveUpAfterMs) total += backoffCeiling(steps++);
    assert.equal(steps, 6);
  });
});

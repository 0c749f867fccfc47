"""OutcomeBatcher: completions finishing together go out together — after at most 5 ms, or at 100."""

import threading
import time
import unittest

import _support  # noqa: F401
from lifeline_delivery import Outcome, OutcomeBatcher, completion_chunks


def done(n):
    return Outcome.complete(f"t-{n}", n, "{}")


class BatcherTests(unittest.TestCase):
    def test_the_readme_defaults(self):
        batcher = OutcomeBatcher()
        self.assertEqual((100, 0.005), (batcher.max_batch, batcher.max_delay))

    def test_completions_arriving_together_come_out_as_one_batch(self):
        batcher = OutcomeBatcher(max_delay=0.2)
        for n in range(3):
            batcher.put(done(n))
        self.assertEqual(["t-0", "t-1", "t-2"], [o.task_id for o in batcher.take(timeout=1)])

    def test_a_lone_completion_is_flushed_after_the_delay(self):
        batcher = OutcomeBatcher()  # 5 ms
        batcher.put(done(1))
        started = time.monotonic()
        batch = batcher.take(timeout=1)
        self.assertEqual(["t-1"], [o.task_id for o in batch])
        self.assertLess(time.monotonic() - started, 0.5)  # within a few ms; generous for a busy machine

    def test_the_delay_counts_from_the_first_arrival_not_from_take(self):
        fake_now = [100.0]
        batcher = OutcomeBatcher(max_delay=0.005, clock=lambda: fake_now[0])
        batcher.put(done(1))
        fake_now[0] += 1.0  # the dispatcher was busy for a second: no reason to wait any more
        started = time.monotonic()
        self.assertEqual(1, len(batcher.take(timeout=1)))
        self.assertLess(time.monotonic() - started, 0.5)

    def test_a_batch_is_sent_at_100_without_waiting_for_the_delay(self):
        batcher = OutcomeBatcher(max_delay=60)
        for n in range(250):
            batcher.put(done(n))
        started = time.monotonic()
        sizes = [len(batcher.take(timeout=1)) for _ in range(2)]
        self.assertEqual([100, 100], sizes)
        self.assertLess(time.monotonic() - started, 5)
        batcher.close()
        self.assertEqual(50, len(batcher.take(timeout=1)))  # closed: the rest at once
        self.assertEqual([], batcher.take(timeout=1))

    def test_the_hundredth_completion_wakes_a_waiting_take(self):
        batcher = OutcomeBatcher(max_delay=60)
        batcher.put(done(0))
        result = []
        taker = threading.Thread(target=lambda: result.append(batcher.take(timeout=10)))
        taker.start()
        time.sleep(0.05)
        for n in range(1, 100):
            batcher.put(done(n))
        taker.join(5)
        self.assertFalse(taker.is_alive())
        self.assertEqual(100, len(result[0]))

    def test_failures_ride_along_in_arrival_order(self):
        batcher = OutcomeBatcher(max_delay=0.05)
        batcher.put(done(1))
        batcher.put(Outcome.fail("t-2", 2, "X"))
        batcher.put(done(3))
        self.assertEqual(["complete", "fail", "complete"], [o.kind for o in batcher.take(timeout=1)])

    def test_take_returns_nothing_when_nothing_arrives(self):
        self.assertEqual([], OutcomeBatcher().take(timeout=0.01))

    def test_drain_empties_it_at_once(self):
        batcher = OutcomeBatcher(max_delay=60)
        for n in range(5):
            batcher.put(done(n))
        self.assertEqual(5, len(batcher.drain()))
        self.assertEqual(0, len(batcher))

    def test_a_chunk_holds_a_task_once_and_at_most_max_batch(self):
        outcomes = [done(1), done(2), Outcome.complete("t-1", 9, "{}"), done(3)]
        self.assertEqual([["t-1", "t-2"], ["t-1", "t-3"]],
                         [[o.task_id for o in chunk] for chunk in completion_chunks(outcomes, 100)])
        self.assertEqual([2, 2, 1], [len(c) for c in completion_chunks([done(n) for n in range(5)], 2)])


if __name__ == "__main__":
    unittest.main()

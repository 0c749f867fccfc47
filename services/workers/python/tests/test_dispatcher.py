"""OutcomeDispatcher against a fake transport: retries, going offline, journaling, probing, syncing, refusals.

No server: the transport is a Python object whose calls fail the way gRPC calls fail (FakeRpcError)."""

import json
import os
import tempfile
import threading
import time
import unittest

import grpc

from _support import FakeRpcError, stale, unavailable
from lifeline_delivery import (CONNECTED, OFFLINE, RETRYING, SYNCING, ConnectionStateMachine, Outcome, OutcomeBatcher,
                               OutcomeDispatcher, OutcomeJournal, RetryPolicy, WorkerStats, replay_units)

FAST = RetryPolicy(immediate_retries=2, base_delay=0.001, max_delay=0.01, budget=0.1)


def eventually(predicate, timeout=5.0, message="condition not met"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(message)


class FakeTransport:
    """The queue as the dispatcher sees it. `down`: every call fails UNAVAILABLE; `refuse`: task id -> refusal
    of its completion; `refuse_failure`: task ids whose FailTask is refused FAILED_PRECONDITION."""

    def __init__(self):
        self.down = False
        self.fail_next = 0  # that many calls fail UNAVAILABLE, then they work
        self.refuse = {}
        self.refuse_failure = set()
        self.calls = []
        self.completed = []  # task ids the queue accepted, in order (repeats included)
        self._lock = threading.Lock()

    def _maybe_down(self):
        if self.down:
            raise unavailable()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise unavailable("connection reset")

    def complete(self, outcomes):
        with self._lock:
            self.calls.append(("complete", [o.task_id for o in outcomes]))
            self._maybe_down()
            refusals = [self.refuse.get(o.task_id) for o in outcomes]
            self.completed.extend(o.task_id for o, r in zip(outcomes, refusals) if r is None)
            return refusals

    def fail(self, outcome):
        with self._lock:
            self.calls.append(("fail", outcome.task_id, outcome.retry_after))
            self._maybe_down()
            if outcome.task_id in self.refuse_failure:
                raise stale("token 1 is not the current token 2")
            return "will retry"

    def progress(self, outcome):
        with self._lock:
            self.calls.append(("progress", outcome.task_id, outcome.progress["percent"]))
            self._maybe_down()

    def probe(self, journaled):
        with self._lock:
            self.calls.append(("probe", list(journaled)))
            return not self.down

    def kinds(self):
        with self._lock:
            return [c[0] for c in self.calls]


class DispatcherTests(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.transport = FakeTransport()
        self.journal = OutcomeJournal(self._dir.name, "py-test")
        self.transitions = []
        self.machine = ConnectionStateMachine(on_change=lambda old, new, why: self.transitions.append((old, new)))
        self.stats = WorkerStats()
        self.dispatcher = None

    def tearDown(self):
        if self.dispatcher is not None:
            self.dispatcher.close(timeout=2)
        self._dir.cleanup()

    def start(self, policy=FAST, **kwargs):
        self.dispatcher = OutcomeDispatcher(self.transport, self.journal, self.machine, self.stats, policy=policy,
                                            batcher=OutcomeBatcher(max_batch=100, max_delay=0.005), **kwargs)
        self.dispatcher.start()
        return self.dispatcher

    def journal_lines(self):
        if not os.path.exists(self.journal.path):
            return []
        with open(self.journal.path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]

    # ---------------------------------------------------------------------------------- connected

    def test_completions_finishing_together_go_out_as_one_call(self):
        dispatcher = self.start(policy=RetryPolicy())
        dispatcher.batcher.max_delay = 0.1  # make "together" easy to hit on a busy machine
        for n in range(5):
            dispatcher.submit(Outcome.complete(f"t-{n}", n, "{}"))
        eventually(lambda: self.stats.completed == 5)
        self.assertEqual([("complete", [f"t-{n}" for n in range(5)])], self.transport.calls)
        self.assertEqual([], self.transitions)

    def test_a_failure_is_one_call_with_its_retry_after(self):
        dispatcher = self.start()
        dispatcher.submit(Outcome.fail("t-1", 1, "HTTP_503", "later", retryable=True, retry_after=30))
        eventually(lambda: self.stats.failed == 1)
        self.assertEqual([("fail", "t-1", 30)], self.transport.calls)

    def test_a_single_dropped_connection_costs_nothing(self):
        self.transport.fail_next = 1
        dispatcher = self.start(policy=RetryPolicy())  # README defaults: the retry is immediate
        started = time.monotonic()
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.stats.completed == 1)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual((1, 0), (self.stats.retries, self.stats.journaled))
        # the first transient failure is `retrying`, and the delivery that follows ends it
        self.assertEqual([("connected", "retrying"), ("retrying", "connected")], self.transitions)

    def test_failures_past_the_immediate_retries_show_as_retrying_until_delivery(self):
        self.transport.fail_next = 5
        dispatcher = self.start()
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.stats.completed == 1)
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, CONNECTED)], self.transitions)
        self.assertEqual(5, self.stats.retries)
        self.assertEqual(6, len(self.transport.calls))
        self.assertEqual([], self.journal_lines())

    def test_a_final_refusal_is_logged_once_counted_and_never_retried(self):
        self.transport.refuse["t-2"] = "FAILED_PRECONDITION: stale [STALE_FENCING_TOKEN]"
        self.transport.refuse_failure.add("t-3")
        dispatcher = self.start()
        dispatcher.batcher.max_delay = 0.1
        with self.assertLogs("lifeline.worker", "WARNING") as logs:
            dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
            dispatcher.submit(Outcome.complete("t-2", 2, "{}"))
            dispatcher.submit(Outcome.fail("t-3", 3, "X"))
            eventually(lambda: self.stats.refused == 2 and self.stats.completed == 1)
            time.sleep(0.05)
        self.assertEqual([("complete", ["t-1", "t-2"]), ("fail", "t-3", None)], self.transport.calls)
        refusals = [line for line in logs.output if "refused" in line]
        self.assertEqual(2, len(refusals))
        self.assertIn("STALE_FENCING_TOKEN", refusals[0])
        self.assertEqual((0, 0, 0), (self.stats.retries, self.stats.journaled, self.stats.failed))

    def test_a_final_error_of_the_whole_call_refuses_its_outcomes_without_retrying(self):
        def refuse_all(outcomes):
            self.transport.calls.append(("complete", [o.task_id for o in outcomes]))
            raise FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "role not allowed")
        self.transport.complete = refuse_all
        dispatcher = self.start()
        with self.assertLogs("lifeline.worker", "WARNING"):
            dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
            eventually(lambda: self.stats.refused == 1)
            time.sleep(0.05)
        self.assertEqual(1, len(self.transport.calls))

    # ------------------------------------------------------------------------------------ offline

    def test_an_outage_longer_than_the_budget_journals_the_outcomes_and_goes_offline(self):
        self.transport.down = True
        dispatcher = self.start()
        dispatcher.submit(Outcome.complete("t-1", 11, '{"a":1}', progress={"percent": 60, "message": "step 3"}))
        eventually(lambda: self.machine.state == OFFLINE)
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, OFFLINE)], self.transitions[:2])
        self.assertEqual(1, self.stats.journaled)
        self.assertGreaterEqual(self.stats.retries, 3)
        lines = self.journal_lines()
        self.assertEqual([("progress", "t-1", "11"), ("complete", "t-1", "11")],
                         [(e["kind"], e["task_id"], e["fencing_token"]) for e in lines])
        self.assertEqual({"a": 1}, lines[1]["result"])

        # Offline, an outcome is on disk when submit returns.
        dispatcher.submit(Outcome.fail("t-2", 12, "X", "m", retryable=True, retry_after=2))
        self.assertEqual(["progress", "complete", "fail"], [e["kind"] for e in self.journal_lines()])
        self.assertEqual(2, self.stats.journaled)

        # The probes name the journaled tasks (whose leases they extend); the network comes back.
        eventually(lambda: any(c[0] == "probe" and len(c[1]) == 2 for c in self.transport.calls))
        probe = next(c for c in self.transport.calls if c[0] == "probe" and len(c[1]) == 2)
        self.assertEqual([("t-1", 11), ("t-2", 12)], probe[1])
        self.transport.down = False
        eventually(lambda: self.machine.state == CONNECTED)
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, OFFLINE), (OFFLINE, SYNCING), (SYNCING, CONNECTED)],
                         self.transitions)
        self.assertEqual((2, 1, 1), (self.stats.replayed, self.stats.completed, self.stats.failed))
        self.assertEqual([], self.journal_lines())  # compacted: rewritten empty
        replay = [c for c in self.transport.calls if c[0] != "probe"][-3:]
        self.assertEqual([("progress", "t-1", 60), ("complete", ["t-1"]), ("fail", "t-2", 2.0)], replay)

        # Connected again: outcomes go to the queue, not to the journal.
        dispatcher.submit(Outcome.complete("t-3", 13, "{}"))
        eventually(lambda: self.stats.completed == 2)
        self.assertEqual(2, self.stats.journaled)

    def test_a_sync_replays_in_order_with_completions_batched_around_progress_entries(self):
        def p(n):
            return Outcome("progress", f"t-{n}", n, progress={"percent": 50, "message": ""})

        def c(n):
            return Outcome.complete(f"t-{n}", n, "{}")
        items = [p(1), c(1), p(2), c(2), Outcome.fail("t-3", 3, "X"), p(4), c(4), c(5), c(6)]
        units = replay_units(items, max_batch=2)
        self.assertEqual([["progress t-1"], ["progress t-2"], ["complete t-1", "complete t-2"], ["fail t-3"],
                          ["progress t-4"], ["complete t-4", "complete t-5"], ["complete t-6"]],
                         [[f"{o.kind} {o.task_id}" for o in unit] for unit in units])

    def test_outcomes_journaled_together_keep_their_completions_together(self):
        self.transport.down = True
        dispatcher = self.start()
        dispatcher.batcher.max_delay = 0.1
        for n in range(3):
            dispatcher.submit(Outcome.complete(f"t-{n}", n, "{}", progress={"percent": 10, "message": ""}))
        eventually(lambda: self.machine.state == OFFLINE)
        self.assertEqual(["progress"] * 3 + ["complete"] * 3, [e["kind"] for e in self.journal_lines()])
        self.transport.down = False
        eventually(lambda: self.machine.state == CONNECTED)
        self.assertEqual([("complete", ["t-0", "t-1", "t-2"])],
                         [c for c in self.transport.calls if c[0] == "complete"][-1:])

    def test_the_readme_policy_retries_for_10_s_of_backoff_before_going_offline(self):
        now = [1000.0]
        sleeps = []

        def sleep(seconds):
            sleeps.append(seconds)
            now[0] += seconds
        self.transport.down = True
        dispatcher = self.start(policy=RetryPolicy(), sleep=sleep, clock=lambda: now[0], rng=lambda: 1.0)
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.machine.state == OFFLINE)
        attempts = [c for c in self.transport.calls if c[0] == "complete"]
        self.assertEqual([0.1, 0.2, 0.4, 0.8, 1.6, 3.2], [round(s, 6) for s in sleeps[:6]])
        self.assertAlmostEqual(10.0, sum(sleeps))
        self.assertTrue(all(s <= 5.0 for s in sleeps))
        self.assertEqual(3 + len(sleeps), len(attempts))  # the first, 2 immediate retries, one after each wait

    def test_a_final_refusal_during_the_sync_drops_the_entry_and_the_sync_goes_on(self):
        self.journal.append(Outcome.complete("t-1", 1, "{}").journal_records()
                            + Outcome.complete("t-2", 2, "{}").journal_records()
                            + Outcome.fail("t-3", 3, "X").journal_records()
                            + Outcome.complete("t-4", 4, "{}").journal_records())
        self.transport.refuse["t-2"] = "FAILED_PRECONDITION: stale [STALE_FENCING_TOKEN]"
        self.machine = ConnectionStateMachine(initial=OFFLINE,
                                              on_change=lambda old, new, why: self.transitions.append((old, new)))
        with self.assertLogs("lifeline.worker", "INFO") as logs:
            self.start()
            eventually(lambda: self.machine.state == CONNECTED)
        self.assertEqual([("complete", ["t-1", "t-2"]), ("fail", "t-3", None), ("complete", ["t-4"])],
                         [c for c in self.transport.calls if c[0] != "probe"])
        self.assertEqual((3, 1), (self.stats.replayed, self.stats.refused))
        self.assertEqual(1, sum("t-2: completion refused" in line for line in logs.output))
        self.assertEqual([], self.journal_lines())

    def test_a_transient_error_during_the_sync_goes_back_offline_keeping_the_rest(self):
        self.journal.append(Outcome.complete("t-1", 1, "{}").journal_records()
                            + Outcome.fail("t-2", 2, "X").journal_records()
                            + Outcome.complete("t-3", 3, "{}").journal_records())
        self.machine = ConnectionStateMachine(initial=OFFLINE,
                                              on_change=lambda old, new, why: self.transitions.append((old, new)))
        original_fail = self.transport.fail
        blocked = threading.Event()

        def fail_while_blocked(outcome):
            if not blocked.is_set():
                blocked.set()
                self.transport.calls.append(("fail", outcome.task_id, None))
                raise unavailable("gateway went away mid-sync")
            return original_fail(outcome)
        self.transport.fail = fail_while_blocked
        self.start()
        eventually(lambda: self.machine.state == CONNECTED)
        self.assertEqual([(OFFLINE, SYNCING), (SYNCING, OFFLINE), (OFFLINE, SYNCING), (SYNCING, CONNECTED)],
                         self.transitions)
        replays = [c for c in self.transport.calls if c[0] != "probe"]
        self.assertEqual([("complete", ["t-1"]), ("fail", "t-2", None), ("fail", "t-2", None), ("complete", ["t-3"])],
                         replays)  # t-1 was not sent again: the journal had been compacted without it
        self.assertEqual(3, self.stats.replayed)

    def test_a_journal_from_an_earlier_run_is_replayed_at_start_before_first_sync_done(self):
        self.journal.append(Outcome.complete("t-1", 1, "{}").journal_records())
        self.machine = ConnectionStateMachine(initial=OFFLINE)
        dispatcher = self.start()
        self.assertTrue(dispatcher.first_sync_done.wait(5))
        self.assertEqual(CONNECTED, self.machine.state)
        self.assertEqual(["t-1"], self.transport.completed)
        self.assertEqual(1, self.stats.replayed)

    def test_first_sync_done_is_set_after_one_failed_attempt_so_the_worker_can_register(self):
        self.journal.append(Outcome.complete("t-1", 1, "{}").journal_records())
        self.machine = ConnectionStateMachine(initial=OFFLINE)
        self.transport.down = True
        dispatcher = self.start()
        self.assertTrue(dispatcher.first_sync_done.wait(5))
        self.assertEqual(OFFLINE, self.machine.state)
        self.assertEqual(1, len(self.journal))

    def test_close_delivers_what_waits(self):
        dispatcher = self.start()
        dispatcher.batcher.max_delay = 60  # only close() makes it go
        for n in range(3):
            dispatcher.submit(Outcome.complete(f"t-{n}", n, "{}"))
        dispatcher.close(timeout=5)
        self.assertEqual(3, self.stats.completed)
        self.assertEqual([], self.journal_lines())

    def test_a_black_holed_network_goes_offline_10_s_after_the_first_attempt_began(self):
        now = [1000.0]

        def timeout(outcomes):
            self.transport.calls.append(("complete", [o.task_id for o in outcomes]))
            now[0] += 5.0  # each attempt lasts until its 5 s deadline
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        self.transport.complete = timeout
        self.start(policy=RetryPolicy(), clock=lambda: now[0], sleep=lambda s: None)
        self.dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.machine.state == OFFLINE)
        self.assertEqual(2, len(self.transport.calls))  # 0-5 s, 5-10 s: then the budget is spent
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, OFFLINE)], self.transitions)

    def test_closing_does_not_back_off_it_journals(self):
        self.transport.down = True
        dispatcher = self.start(policy=RetryPolicy())  # README policy: backoff would take 10 s
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.machine.state == RETRYING)
        started = time.monotonic()
        dispatcher.submit(Outcome.complete("t-2", 2, "{}"))
        dispatcher.close(timeout=30)
        self.assertLess(time.monotonic() - started, 6)
        self.assertEqual(["t-1", "t-2"], sorted(e["task_id"] for e in self.journal_lines()))

    def test_an_answer_elsewhere_makes_the_offline_worker_probe_at_once(self):
        self.transport.down = True
        dispatcher = self.start(policy=RetryPolicy(immediate_retries=0, base_delay=60, max_delay=60, budget=0.01))
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.machine.state == OFFLINE)
        time.sleep(0.05)
        probes = self.transport.kinds().count("probe")
        self.transport.down = False
        dispatcher.gateway_answered()  # e.g. the heartbeat stream is back; the next probe was a minute away
        eventually(lambda: self.machine.state == CONNECTED, timeout=5)
        self.assertEqual(probes + 1, self.transport.kinds().count("probe"))

    def test_other_queue_calls_drive_the_state_too(self):
        now = [1000.0]
        self.start(clock=lambda: now[0])
        self.dispatcher.call_failed("UNAVAILABLE: reset (LeaseTasks)")
        self.assertEqual(RETRYING, self.machine.state)
        self.dispatcher.call_answered()
        self.assertEqual(CONNECTED, self.machine.state)
        self.dispatcher.call_failed("UNAVAILABLE: reset (lease extension)")
        now[0] += 0.05
        self.dispatcher.call_failed("UNAVAILABLE: reset (lease extension)")
        self.assertEqual(RETRYING, self.machine.state)
        now[0] += FAST.budget  # failing for the whole budget: offline, though no outcome was waiting
        self.transport.down = True
        self.dispatcher.call_failed("UNAVAILABLE: reset (lease extension)")
        self.assertEqual(OFFLINE, self.machine.state)
        self.dispatcher.submit(Outcome.complete("t-1", 1, "{}"))  # offline: straight to the journal
        self.assertEqual(["t-1"], [e["task_id"] for e in self.journal_lines()])
        self.transport.down = False
        eventually(lambda: self.machine.state == CONNECTED)
        self.assertEqual(["t-1"], self.transport.completed)
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, CONNECTED), (CONNECTED, RETRYING), (RETRYING, OFFLINE),
                          (OFFLINE, SYNCING), (SYNCING, CONNECTED)], self.transitions)

    def test_an_answer_to_another_call_does_not_end_retrying_while_an_outcome_is_retried(self):
        self.transport.down = True
        dispatcher = self.start(policy=RetryPolicy(immediate_retries=0, base_delay=0.2, max_delay=0.2, budget=30))
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        eventually(lambda: self.machine.state == RETRYING)
        dispatcher.call_answered()  # e.g. the registry answers, the queue does not
        self.assertEqual(RETRYING, self.machine.state)
        self.transport.down = False
        eventually(lambda: self.machine.state == CONNECTED and self.stats.completed == 1)

    def test_close_journals_what_cannot_be_delivered(self):
        self.transport.down = True
        dispatcher = self.start()
        dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
        dispatcher.close(timeout=5)
        self.assertEqual(["t-1"], [e["task_id"] for e in self.journal_lines()])
        dispatcher.submit(Outcome.complete("t-2", 2, "{}"))  # a handler finishing after the stop
        self.assertEqual(["t-1", "t-2"], [e["task_id"] for e in self.journal_lines()])
        self.assertEqual(2, self.stats.journaled)

    def test_an_unwritable_journal_keeps_outcomes_in_memory_until_the_sync(self):
        def disk_full(fd):
            raise OSError(28, "No space left on device")
        self.journal = OutcomeJournal(self._dir.name, "py-test", fsync=disk_full)
        self.transport.down = True
        dispatcher = self.start()
        with self.assertLogs("lifeline.worker", "ERROR") as logs:
            dispatcher.submit(Outcome.complete("t-1", 1, "{}"))
            eventually(lambda: self.machine.state == OFFLINE)
        self.assertIn("kept in memory only", "\n".join(logs.output))
        self.assertEqual(0, self.stats.journaled)
        self.assertEqual(1, dispatcher.pending)
        self.transport.down = False
        eventually(lambda: self.machine.state == CONNECTED)
        self.assertEqual(["t-1"], self.transport.completed)
        self.assertEqual(0, dispatcher.pending)

if __name__ == "__main__":
    unittest.main()

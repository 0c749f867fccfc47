"""The worker on the queue's dispatch stream (QueueService.Dispatch), against the fake Lifeline on a real gRPC server.

What they prove: the stream is the default (no LeaseTasks, no unary outcome calls while it works); the slots the
worker gives the stream bound what it is pushed (max_tasks, `once`), and a task whose lease is lost frees its slot;
leases of silent handlers are kept with `extend_lease` on the stream; a stream cut mid-run loses and doubles nothing
(an outcome applied but unanswered is sent again, and the queue takes the repeat without completing twice); stop
tells the stream 0 slots and releases on it; a drain pauses it; `dispatch_stream=False` and a queue without the
stream (UNIMPLEMENTED) lease with LeaseTasks long polls. What they do not prove: the real queue's stream, which
tests/Lifeline.Workers.Tests (PythonWorkerFaultTests) runs the demo worker against.
"""

import threading
import time
import unittest

import _support  # noqa: F401
import fake_lifeline
from test_fault_inprocess import InProcessHarness, eventually

if fake_lifeline.STUBS:
    from lifeline.registry.v1 import registry_pb2
    from lifeline_delivery import CONNECTED

UNARY_TASK_CALLS = ("LeaseTasks", "CompleteTasks", "CompleteTask", "FailTask", "ReportProgress", "ExtendLease",
                    "ReleaseTask", "StartTask")


@unittest.skipUnless(fake_lifeline.STUBS, "the gRPC stubs could not be generated (generate.sh needs protoc)")
class DispatchStreamTests(InProcessHarness):
    def counting(self, seconds=0.2):
        """A handler that records how many handlers run at once, reports progress and completes after `seconds`."""
        state = {"now": 0, "most": 0}
        lock = threading.Lock()

        def handler(ctx):
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
                self.runs[ctx.task_id] = self.runs.get(ctx.task_id, 0) + 1
            try:
                ctx.report_progress(50, "half way")
                time.sleep(seconds)
                return {"ran": ctx.task_id}
            finally:
                with lock:
                    state["now"] -= 1
        return handler, state

    def unary_task_calls(self):
        return {m: self.lifeline.queue.count(m) for m in UNARY_TASK_CALLS if self.lifeline.queue.count(m)}

    def test_the_stream_is_the_default_tasks_outcomes_and_progress_go_on_it_and_nothing_is_leased_by_long_poll(self):
        handler, concurrency = self.counting()
        tasks = [self.lifeline.queue.enqueue("count") for _ in range(6)]
        worker = self.start_worker(handlers={"count": handler}, max_tasks=2, once=6)
        self.thread.join(30)
        self.assertFalse(self.thread.is_alive(), "the worker did not stop after 6 tasks")
        for task in tasks:
            self.assertEqual("completed", task.status)
            self.assertEqual([task.token], task.completions)
            self.assertEqual(1, task.pushes)
            self.assertEqual(50, task.progress)
        self.assertEqual({}, self.unary_task_calls())
        self.assertEqual(1, self.lifeline.queue.count("Dispatch"))
        self.assertEqual(6, self.lifeline.queue.count("Dispatch.complete"))
        self.assertGreaterEqual(self.lifeline.queue.count("Dispatch.progress"), 1)
        self.assertLessEqual(concurrency["most"], 2)
        self.assertEqual(2, self.lifeline.queue.slot_counts[0])  # opened with max_tasks slots
        self.assertEqual((6, 0, 0), (worker.stats.completed, worker.stats.failed, worker.stats.refused))
        # Fewer slots as `once` comes near (sent before the outcome that frees one), 0 at the end.
        counts = self.lifeline.queue.slot_counts
        self.assertEqual(counts, sorted(counts, reverse=True))
        self.assertEqual(0, counts[-1])

    def test_once_takes_no_more_tasks_than_asked_even_as_outcomes_free_slots(self):
        handler, _ = self.counting(0.05)
        tasks = [self.lifeline.queue.enqueue("count") for _ in range(8)]
        self.start_worker(handlers={"count": handler}, max_tasks=4, once=3)
        self.thread.join(30)
        self.assertFalse(self.thread.is_alive())
        self.assertEqual(3, sum(t.pushes for t in tasks), self.lifeline.queue.slot_counts)
        self.assertEqual(3, sum(t.status == "completed" for t in tasks))
        self.assertEqual(5, sum(t.status == "pending" for t in tasks))
        self.assertEqual(3, self.lifeline.queue.slot_counts[0])
        self.assertEqual(0, self.lifeline.queue.count("ReleaseTask") + self.lifeline.queue.count("Dispatch.release"))

    def test_a_silent_handler_keeps_its_lease_with_extend_lease_on_the_stream(self):
        def silent(ctx):
            self.runs[ctx.task_id] = self.runs.get(ctx.task_id, 0) + 1
            time.sleep(3.5)
            return {}
        task = self.lifeline.queue.enqueue("silent")
        stop = threading.Event()

        def maintenance():  # the real queue's: a lease that ran out goes back to pending
            while not stop.wait(0.1):
                self.lifeline.queue.expire_leases()
        threading.Thread(target=maintenance, daemon=True).start()
        try:
            self.start_worker(handlers={"silent": silent}, lease_duration=1.5, once=1)
            self.thread.join(30)
        finally:
            stop.set()
        self.assertEqual("completed", task.status)
        self.assertEqual(1, task.pushes)  # never lost its lease, never pushed again
        self.assertEqual({task.id: 1}, self.runs)
        self.assertGreaterEqual(self.lifeline.queue.count("Dispatch.extend_lease"), 2)
        self.assertEqual({}, self.unary_task_calls())

    def test_a_stream_cut_mid_run_loses_nothing_and_completes_each_task_once(self):
        tasks = [self.lifeline.queue.enqueue("gated") for _ in range(4)]
        worker = self.start_worker(lease_duration=3, max_tasks=5)
        eventually(lambda: len(self.runs) == 4, message="the four tasks were not pushed")
        self.lifeline.queue.cut_streams()
        eventually(lambda: self.lifeline.queue.count("Dispatch") >= 2, message="no new stream after the cut")
        time.sleep(1.5)  # past a third of the lease: the held leases are extended (on the new stream)
        self.gate.set()
        eventually(lambda: all(t.status == "completed" for t in tasks), message=lambda: self.lifeline.queue.calls)
        for task in tasks:
            self.assertEqual([task.token], task.completions)
            self.assertEqual(1, task.pushes)
            self.assertEqual(1, self.runs[task.id])
        self.assertEqual(4, worker.stats.completed)
        self.assertEqual(0, worker.stats.refused)
        self.assertEqual(0, self.lifeline.queue.count("LeaseTasks"))
        calls = self.lifeline.queue.calls
        second_open = [i for i, c in enumerate(calls) if c == "Dispatch.open"][1]
        kept = [c for c in calls[second_open:] if c in ("Dispatch.progress", "Dispatch.extend_lease")]
        self.assertTrue(kept, calls)  # leases kept (with the handlers' progress) on the new stream
        # The new stream was opened with 1 slot of 5 while the four handlers of the old one ran, and the slots came
        # back (capacity) as they ended.
        self.assertEqual([5, 1], self.lifeline.queue.slot_counts[:2])
        self.assertEqual(5, self.lifeline.queue.slot_counts[-1])

    def test_an_outcome_the_queue_applied_but_did_not_answer_before_the_stream_broke_is_sent_again_and_counted_once(self):
        task = self.lifeline.queue.enqueue("gated")
        self.lifeline.queue.cut_before_ack = True
        worker = self.start_worker()
        eventually(lambda: task.id in self.runs)
        self.gate.set()
        eventually(lambda: worker.stats.completed == 1, message=lambda: self.lifeline.queue.calls)
        self.assertEqual("completed", task.status)
        self.assertEqual([task.token], task.completions)  # the repeat changed nothing
        sent = self.lifeline.queue.count("Dispatch.complete") + self.lifeline.queue.count("CompleteTasks")
        self.assertEqual(2, sent, self.lifeline.queue.calls)
        self.assertEqual((0, 0), (worker.stats.refused, worker.stats.journaled))
        self.assertEqual(CONNECTED, worker.connection_state)

    def test_a_task_whose_lease_is_lost_frees_its_slot_on_the_stream(self):
        def waits(ctx):
            self.runs[ctx.task_id] = self.runs.get(ctx.task_id, 0) + 1
            ctx.cancel_event.wait(20)
            ctx.raise_if_cancelled()
            return {}
        first = self.lifeline.queue.enqueue("waits")
        worker = self.start_worker(handlers={"waits": waits}, max_tasks=1, lease_duration=1.2)
        eventually(lambda: first.id in self.runs)
        second = self.lifeline.queue.enqueue("waits")
        self.lifeline.queue.lease_as_another_worker(first)  # the lease keeper's next extension is refused
        eventually(lambda: second.id in self.runs, message="the lost task's slot was not freed")
        self.assertEqual(1, worker.stats.abandoned)
        self.assertEqual(0, first.releases)  # the release was refused: it only freed the slot
        self.assertIn("Dispatch.release", self.lifeline.queue.calls)

    def test_stopping_tells_the_stream_0_slots_and_releases_running_tasks_on_it(self):
        def polite(ctx):
            self.runs[ctx.task_id] = self.runs.get(ctx.task_id, 0) + 1
            ctx.cancel_event.wait(20)
            ctx.raise_if_cancelled()
        tasks = [self.lifeline.queue.enqueue("polite") for _ in range(2)]
        worker = self.start_worker(handlers={"polite": polite}, max_tasks=2)
        eventually(lambda: len(self.runs) == 2)
        worker.stop("test")
        self.thread.join(20)
        self.assertFalse(self.thread.is_alive())
        self.assertEqual(2, worker.stats.released)
        self.assertTrue(all(t.status == "pending" and t.releases == 1 for t in tasks))
        calls = self.lifeline.queue.calls
        self.assertLess(calls.index("Dispatch.capacity"), calls.index("Dispatch.release"), calls)
        self.assertEqual(0, self.lifeline.queue.slot_counts[-1])
        self.assertEqual(0, self.lifeline.queue.count("ReleaseTask"))
        self.assertLess(calls.index("Dispatch.release"), len(calls) - 1)
        self.assertEqual([], list(self.lifeline.queue.streams))  # half-closed, and ended by the queue

    def test_a_drain_pauses_the_stream_lets_running_handlers_finish_and_stops(self):
        running = self.lifeline.queue.enqueue("gated")
        worker = self.start_worker()
        eventually(lambda: running.id in self.runs)
        self.lifeline.registry.command(registry_pb2.WorkerCommand(drain=registry_pb2.DrainCommand(reason="maintenance")))
        eventually(lambda: 0 in self.lifeline.queue.slot_counts, message="the stream was not paused")
        later = self.lifeline.queue.enqueue("gated")
        time.sleep(0.3)
        self.gate.set()
        self.thread.join(20)
        self.assertFalse(self.thread.is_alive(), "the drained worker did not stop")
        self.assertEqual("completed", running.status)
        self.assertEqual(("pending", 0), (later.status, later.pushes))
        self.assertIn("drain", worker.stats.commands)

    def test_a_completion_the_stream_refuses_as_bad_input_is_dropped_and_the_others_of_its_batch_are_delivered(self):
        self.lifeline.queue.max_result = 1000
        done = threading.Barrier(3)

        def sized(ctx):
            done.wait(10)  # the three finish together: one batch, sent as three `complete` requests
            return {"blob": "x" * ctx.payload["size"]}
        tasks = [self.lifeline.queue.enqueue("sized", '{"size": %d}' % size) for size in (10, 5000, 10)]
        worker = self.start_worker(handlers={"sized": sized}, once=3)
        self.thread.join(30)
        self.assertFalse(self.thread.is_alive())
        self.assertEqual(["completed", "running", "completed"], [t.status for t in tasks])
        self.assertEqual((2, 1, 0), (worker.stats.completed, worker.stats.refused, worker.stats.journaled))
        # The bad one was sent once (the stream ended with INVALID_ARGUMENT) and not again.
        sent = [c for c in self.lifeline.queue.calls if c in ("Dispatch.complete", "CompleteTasks", "CompleteTask")]
        self.assertLessEqual(len(sent), 4, self.lifeline.queue.calls)

    def test_dispatch_stream_false_leases_with_long_polls(self):
        tasks = [self.lifeline.queue.enqueue("gated") for _ in range(2)]
        self.gate.set()
        worker = self.start_worker(dispatch_stream=False, once=2)
        self.thread.join(30)
        self.assertTrue(all(t.status == "completed" and t.completions == [t.token] for t in tasks))
        self.assertEqual(0, self.lifeline.queue.count("Dispatch"))
        self.assertGreaterEqual(self.lifeline.queue.count("LeaseTasks"), 1)
        self.assertGreaterEqual(self.lifeline.queue.count("CompleteTasks"), 1)
        self.assertEqual(2, worker.stats.completed)

    def test_a_queue_without_the_stream_unimplemented_makes_the_worker_lease_with_long_polls(self):
        self.lifeline.queue.dispatch_supported = False
        tasks = [self.lifeline.queue.enqueue("gated") for _ in range(2)]
        self.gate.set()
        with self.assertLogs("lifeline.worker", "INFO") as logs:
            worker = self.start_worker(once=2)
            self.thread.join(30)
        self.assertTrue(all(t.status == "completed" and t.completions == [t.token] for t in tasks))
        self.assertEqual(1, self.lifeline.queue.count("Dispatch"))  # tried once, then never again
        self.assertGreaterEqual(self.lifeline.queue.count("LeaseTasks"), 1)
        self.assertEqual(2, worker.stats.completed)
        self.assertTrue(any("no dispatch stream" in line and "UNIMPLEMENTED" in line for line in logs.output), logs.output)


if __name__ == "__main__":
    unittest.main()

"""Fault tests with a real gRPC server in this process (fake_lifeline) that goes down and comes back.

What they prove, on real gRPC channels and sockets (not the real services — tests/Lifeline.Workers.Tests does
that through the gateway): while the server is down, finished outcomes are journaled and not lost, leasing
stops, held handlers keep running; when it is back, the journal is replayed, each task is completed once,
leasing resumes; an outcome whose lease ended meanwhile is refused and dropped (not retried); a worker
process SIGKILLed while offline replays its journal when started again, before it leases anything.
What they do not prove: the real queue's and gateway's behaviour (fencing, idempotent repeats, YARP's
errors), which the fake only imitates.
"""

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import _support  # noqa: F401
import fake_lifeline

if fake_lifeline.STUBS:
    import lifeline_worker
    from lifeline_delivery import CONNECTED, OFFLINE, RETRYING, SYNCING, RetryPolicy

EXAMPLE = os.path.join(_support.LIBRARY, "example_worker.py")
QUICK = None if not fake_lifeline.STUBS else RetryPolicy(immediate_retries=2, base_delay=0.05, max_delay=0.5, budget=1.0)


def eventually(predicate, timeout=20.0, message="condition not met"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(message() if callable(message) else message)


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read()


class InProcessHarness(unittest.TestCase):
    """A fake Lifeline on a real gRPC server, and a worker (on a thread) whose `gated` handler waits for the gate."""

    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.lifeline = fake_lifeline.FakeLifeline()
        self.transitions = []
        self.gate = threading.Event()
        self.released = set()  # task ids whose handler may finish before the gate opens
        self.runs = {}
        self._runs_lock = threading.Lock()
        self.worker = None
        self.thread = None

    def tearDown(self):
        if self.worker is not None:
            self.gate.set()
            self.worker.shutdown_grace = 1
            self.worker.stop("test over")
            self.thread.join(30)
        self.lifeline.close()
        self._dir.cleanup()

    def gated(self, ctx):
        with self._runs_lock:
            self.runs[ctx.task_id] = self.runs.get(ctx.task_id, 0) + 1
        while not self.gate.wait(0.05) and ctx.task_id not in self.released:
            ctx.report_progress(10, "waiting for the gate")
        return {"ran": ctx.task_id}

    def start_worker(self, **kwargs):
        options = dict(name="py-fault", max_tasks=4, lease_duration=30, poll_wait=1, shutdown_grace=5,
                       journal_dir=os.path.join(self._dir.name, "journal"), retry_policy=QUICK,
                       on_state_change=lambda old, new, why: self.transitions.append((old, new)))
        handlers = kwargs.pop("handlers", None) or {"gated": self.gated}
        options.update(kwargs)
        self.worker = lifeline_worker.Worker(self.lifeline.target, handlers, **options)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        return self.worker

    def journal_entries(self):
        path = self.worker.journal.path
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]


@unittest.skipUnless(fake_lifeline.STUBS, "the gRPC stubs could not be generated (generate.sh needs protoc)")
class InProcessFaultTests(InProcessHarness):
    def test_outcomes_finished_during_an_outage_are_journaled_and_delivered_once_when_it_ends(self):
        tasks = [self.lifeline.queue.enqueue("gated") for _ in range(3)]
        worker = self.start_worker()
        eventually(lambda: len(self.runs) == 3, message="the three tasks were not leased")
        eventually(lambda: self.lifeline.registry.stream_beats > 0, message="no beat on the heartbeat stream")
        self.assertEqual(0, self.lifeline.queue.count("StartTask"))  # pushed started

        self.lifeline.down()
        self.gate.set()  # the handlers finish while the server is down
        eventually(lambda: worker.connection_state == OFFLINE, message="the worker did not go offline")
        eventually(lambda: worker.stats.journaled == 3)
        entries = self.journal_entries()
        self.assertEqual(3, sum(e["kind"] == "complete" for e in entries))
        self.assertEqual({t.id for t in tasks}, {e["task_id"] for e in entries if e["kind"] == "complete"})
        self.assertTrue(all(isinstance(e["fencing_token"], str) for e in entries))

        opens_while_down = self.lifeline.queue.count("Dispatch.open")
        self.lifeline.up()
        eventually(lambda: worker.connection_state == CONNECTED and worker.stats.replayed == 3,
                   message="the journal was not replayed")
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, OFFLINE), (OFFLINE, SYNCING), (SYNCING, CONNECTED)],
                         self.transitions[:4])
        for task in tasks:
            self.assertEqual("completed", task.status)
            self.assertEqual([task.token], task.completions)  # completed once, with the lease's token
            self.assertEqual(1, self.runs[task.id])            # and run once
        self.assertEqual([], self.journal_entries())

        # Leasing resumes: a new task runs and completes.
        later = self.lifeline.queue.enqueue("gated")
        eventually(lambda: later.status == "completed", message="leasing did not resume")
        self.assertGreater(self.lifeline.queue.count("Dispatch.open"), opens_while_down)  # a new stream
        self.assertEqual(0, self.lifeline.queue.count("LeaseTasks"))
        self.assertEqual((4, 0, 0), (worker.stats.completed, worker.stats.refused, worker.stats.failed))

    def test_offline_nothing_is_leased_until_the_journal_is_replayed_and_held_leases_are_extended_first(self):
        finished, held = self.lifeline.queue.enqueue("gated"), self.lifeline.queue.enqueue("gated")
        worker = self.start_worker(max_tasks=3)
        eventually(lambda: finished.id in self.runs and held.id in self.runs)
        self.lifeline.down()
        self.released.add(finished.id)  # one handler finishes during the outage, the other keeps running
        eventually(lambda: worker.connection_state == OFFLINE)
        # Its completion journaled, not still in a retry of its own (which the outage's end would let through first).
        eventually(lambda: worker.stats.journaled == 1, message="the finished task's completion was not journaled")
        waiting = self.lifeline.queue.enqueue("gated")  # a free slot, but offline: not to be leased yet
        calls_before = len(self.lifeline.queue.calls)
        self.lifeline.up()
        eventually(lambda: worker.connection_state == CONNECTED)
        eventually(lambda: waiting.id in self.runs, message="leasing did not resume")
        after = self.lifeline.queue.calls[calls_before:]
        # First the probe (the held task's lease, with its unrecorded progress), then the replay, then a new stream.
        first_extension = min(after.index(m) for m in ("ReportProgress", "ExtendLease") if m in after)
        self.assertLess(first_extension, after.index("CompleteTasks"), after)
        self.assertLess(after.index("CompleteTasks"), after.index("Dispatch.open"), after)
        self.assertEqual("completed", finished.status)
        self.assertEqual("running", held.status)
        self.assertEqual(10, held.progress)
        self.gate.set()
        eventually(lambda: held.status == "completed" and waiting.status == "completed")
        self.assertEqual({finished.id: 1, held.id: 1, waiting.id: 1}, self.runs)

    def test_an_outcome_whose_lease_ended_during_the_outage_is_refused_once_and_the_next_holder_completes_it(self):
        task = self.lifeline.queue.enqueue("gated")
        worker = self.start_worker(lease_duration=1)
        eventually(lambda: task.id in self.runs)
        first_token = task.token
        self.lifeline.down()
        self.gate.set()
        eventually(lambda: worker.connection_state == OFFLINE)
        time.sleep(1.2)  # longer than the lease
        self.lifeline.queue.expire_leases()
        next_token = self.lifeline.queue.lease_as_another_worker(task)
        with self.assertLogs("lifeline.worker", "INFO") as logs:
            self.lifeline.up()
            eventually(lambda: worker.connection_state == CONNECTED)
        self.assertEqual(1, worker.stats.refused)
        self.assertEqual(0, worker.stats.replayed)
        refusals = [line for line in logs.output if "refused" in line and task.id in line]
        self.assertEqual(1, len(refusals), refusals)
        self.assertIn("STALE_FENCING_TOKEN", refusals[0])
        self.assertEqual([], self.journal_entries())
        self.assertEqual("running", task.status)  # untouched by the stale outcome
        self.assertGreater(next_token, first_token)
        self.assertEqual(1, self.lifeline.queue.count("CompleteTasks"))  # never retried
        # The next holder completes it, once.
        with self.lifeline.queue.lock:
            self.assertIsNone(self.lifeline.queue._complete(task.id, next_token, "{}"))
        self.assertEqual([next_token], task.completions)

    def test_progress_reports_do_not_block_the_handler_and_the_latest_one_is_recorded(self):
        timings = []

        def chatty(ctx):
            started = time.monotonic()
            for percent in range(1, 1001):
                ctx.report_progress(percent // 10, f"{percent}")
            timings.append(time.monotonic() - started)
            time.sleep(0.5)  # the lease keeper sends the latest report meanwhile
            return {}
        task = self.lifeline.queue.enqueue("chatty")
        self.worker = lifeline_worker.Worker(self.lifeline.target, {"chatty": chatty}, name="py-chatty", poll_wait=1,
                                             journal_dir=os.path.join(self._dir.name, "journal"), once=1)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        self.thread.join(30)
        self.assertEqual("completed", task.status)
        self.assertLess(timings[0], 0.5)  # 1000 reports, no call waited for
        self.assertEqual(100, task.progress)
        self.assertLess(self.lifeline.queue.count("Dispatch.progress"), 20)  # coalesced, not 1000 requests
        self.assertEqual(0, self.lifeline.queue.count("ReportProgress"))    # on the dispatch stream

    def test_heartbeats_fall_back_to_unary_calls_when_the_stream_cannot_be_opened(self):
        self.lifeline.registry.stream_supported = False
        worker = self.start_worker()
        eventually(lambda: self.lifeline.registry.beats >= 2, message="no unary heartbeat")
        self.assertEqual(0, self.lifeline.registry.stream_beats)
        self.assertEqual(CONNECTED, worker.connection_state)

    def test_a_failure_carries_retry_after(self):
        def later(ctx):
            raise lifeline_worker.TaskFailed("HTTP_503", "upstream busy", retry_after=7.5)
        task = self.lifeline.queue.enqueue("later")
        self.worker = lifeline_worker.Worker(self.lifeline.target, {"later": later}, name="py-later", poll_wait=1,
                                             journal_dir=os.path.join(self._dir.name, "journal"), once=1)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        self.thread.join(30)
        self.assertEqual([(task.token, "HTTP_503", 7.5)], task.failures)
        self.assertEqual("pending", task.status)  # retry_after makes it retryable
        self.assertEqual(1, self.worker.stats.failed)

    def test_a_worker_killed_while_offline_replays_its_journal_before_leasing_when_started_again(self):
        """example_worker.py as a process: SIGKILL while offline, then the same name and journal directory."""
        journal_dir = os.path.join(self._dir.name, "journal")
        ledger = os.path.join(self._dir.name, "ledger")
        tasks = [self.lifeline.queue.enqueue("demo.steps", json.dumps({"steps": 2, "step_ms": 50})) for _ in range(2)]
        command = ["/usr/bin/python3", EXAMPLE, "--target", self.lifeline.target, "--types", "demo.steps",
                   "--name", "py-killed", "--journal-dir", journal_dir, "--ledger", ledger, "--poll-seconds", "1",
                   "--lease-seconds", "60"]
        log_path = os.path.join(self._dir.name, "first.log")
        with open(log_path, "wb") as log_file:
            first = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: all(t.status == "running" for t in tasks), message="tasks not leased")
            self.lifeline.down()  # the steps finish while the server is down
            journal = os.path.join(journal_dir, "py-killed.journal")

            def journaled():
                if not os.path.exists(journal):
                    return 0
                with open(journal, encoding="utf-8") as file:
                    return sum(json.loads(line)["kind"] == "complete" for line in file if line.strip())
            eventually(lambda: journaled() == 2, timeout=40, message=lambda: "outcomes were not journaled: " + _read(log_path))
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        first_ledger = _ledger_lines(ledger)
        self.assertEqual(sorted(t.id for t in tasks), sorted(line[0] for line in first_ledger))
        for task in tasks:
            self.assertNotEqual("completed", task.status)

        calls_before = len(self.lifeline.queue.calls)
        self.lifeline.up()
        second_log = os.path.join(self._dir.name, "second.log")
        with open(second_log, "wb") as log_file:
            second = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: all(t.status == "completed" for t in tasks), timeout=30,
                       message=lambda: "journal not replayed: " + _read(second_log))
            eventually(lambda: "Dispatch.open" in self.lifeline.queue.calls[calls_before:], timeout=10)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        output = _read(second_log)
        after = self.lifeline.queue.calls[calls_before:]
        self.assertLess(after.index("CompleteTasks"), after.index("Dispatch.open"), after)  # replayed before leasing
        for task in tasks:
            self.assertEqual(1, len(task.completions), output)       # completed once
        self.assertEqual(first_ledger, _ledger_lines(ledger))        # and not run again
        self.assertIn("holds 2 outcome(s) from an earlier run", output)
        self.assertNotIn("connection connected → offline", output)
        self.assertIn("connection offline → syncing", output)
        self.assertIn("2 replayed", output)
        self.assertEqual(0, second.returncode, output)


def _ledger_lines(prefix):
    lines = []
    directory, base = os.path.split(prefix)
    for name in sorted(os.listdir(directory)):
        if name.startswith(base + "."):
            with open(os.path.join(directory, name), encoding="ascii") as file:
                lines.extend(tuple(line.split()) for line in file if line.strip())
    return sorted(lines)


if __name__ == "__main__":
    unittest.main()

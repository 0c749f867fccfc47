"""ConnectionStateMachine: the README's states and transitions, one log line and one callback per transition."""

import threading
import unittest

import _support  # noqa: F401
from lifeline_delivery import CONNECTED, OFFLINE, RETRYING, SYNCING, ConnectionStateMachine


class StateMachineTests(unittest.TestCase):
    def setUp(self):
        self.seen = []
        self.machine = ConnectionStateMachine(on_change=lambda old, new, reason: self.seen.append((old, new, reason)))

    def test_it_starts_connected(self):
        self.assertEqual(CONNECTED, self.machine.state)

    def test_the_readme_cycle_with_one_log_line_and_one_callback_per_transition(self):
        steps = [(RETRYING, "UNAVAILABLE: connection refused"), (OFFLINE, "UNAVAILABLE: connection refused"),
                 (SYNCING, "the gateway answers"), (CONNECTED, "journal replayed")]
        with self.assertLogs("lifeline.worker", "INFO") as logs:
            for state, reason in steps:
                self.assertTrue(self.machine.transition(state, reason))
        self.assertEqual([
            "INFO:lifeline.worker:connection connected → retrying: UNAVAILABLE: connection refused",
            "INFO:lifeline.worker:connection retrying → offline: UNAVAILABLE: connection refused",
            "INFO:lifeline.worker:connection offline → syncing: the gateway answers",
            "INFO:lifeline.worker:connection syncing → connected: journal replayed",
        ], logs.output)
        self.assertEqual([(CONNECTED, RETRYING), (RETRYING, OFFLINE), (OFFLINE, SYNCING), (SYNCING, CONNECTED)],
                         [(old, new) for old, new, _ in self.seen])
        self.assertEqual("journal replayed", self.seen[-1][2])

    def test_retrying_can_recover_and_a_failed_sync_goes_back_offline(self):
        for state in (RETRYING, CONNECTED, RETRYING, OFFLINE, SYNCING, OFFLINE, SYNCING, CONNECTED):
            self.assertTrue(self.machine.transition(state, "x"), state)
        self.assertEqual(8, len(self.seen))

    def test_outcomes_journaled_without_retries_go_from_connected_to_offline(self):
        self.assertTrue(self.machine.transition(OFFLINE, "a journal from an earlier run"))

    def test_steps_outside_the_diagram_are_refused_and_change_nothing(self):
        refused = [(CONNECTED, SYNCING), (RETRYING, SYNCING), (OFFLINE, CONNECTED), (OFFLINE, RETRYING),
                   (SYNCING, RETRYING)]
        for start, target in refused:
            with self.subTest(start=start, target=target):
                machine = ConnectionStateMachine(initial=start)
                with self.assertLogs("lifeline.worker", "WARNING"):
                    self.assertFalse(machine.transition(target, "x"))
                self.assertEqual(start, machine.state)

    def test_staying_put_is_no_transition(self):
        self.assertFalse(self.machine.transition(CONNECTED, "x"))
        self.assertEqual([], self.seen)

    def test_a_failing_callback_does_not_stop_the_transition_or_the_other_callbacks(self):
        machine = ConnectionStateMachine(on_change=lambda *_: 1 / 0)
        after = []
        machine.subscribe(lambda old, new, reason: after.append(new))
        with self.assertLogs("lifeline.worker", "ERROR"):
            self.assertTrue(machine.transition(RETRYING, "x"))
        self.assertEqual(RETRYING, machine.state)
        self.assertEqual([RETRYING], after)

    def test_wait_for_wakes_on_the_transition(self):
        timer = threading.Timer(0.05, lambda: self.machine.transition(OFFLINE, "x"))
        timer.start()
        self.assertTrue(self.machine.wait_for([OFFLINE], timeout=5))
        self.assertFalse(self.machine.wait_for([SYNCING], timeout=0.01))

    def test_restore_sets_the_state_without_a_transition(self):
        self.machine.restore(OFFLINE)
        self.assertEqual(OFFLINE, self.machine.state)
        self.assertEqual([], self.seen)
        self.assertTrue(self.machine.transition(SYNCING, "x"))

    def test_unknown_initial_state(self):
        with self.assertRaises(ValueError):
            ConnectionStateMachine(initial="online")


if __name__ == "__main__":
    unittest.main()

"""Which errors are retried, and how long: is_transient and RetryPolicy (README, "When the network fails")."""

import unittest

import grpc

from _support import FakeRpcError
from lifeline_delivery import RetryPolicy, describe, is_transient, reason_of


class ClassificationTests(unittest.TestCase):
    def test_transient_codes_are_retried(self):
        for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                     grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED):
            with self.subTest(code=code):
                self.assertTrue(is_transient(code))
                self.assertTrue(is_transient(FakeRpcError(code)))

    def test_everything_else_is_a_final_refusal(self):
        transient = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                     grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
        for code in grpc.StatusCode:
            if code in transient:
                continue
            with self.subTest(code=code):
                self.assertFalse(is_transient(code))
                self.assertFalse(is_transient(FakeRpcError(code)))

    def test_the_error_info_reason_is_read_from_the_status_details(self):
        from lifeline_delivery import _ErrorInfo, _Status  # noqa: the private google.rpc types
        status = _Status(code=9, message="stale")
        detail = status.details.add()
        detail.type_url = "type.googleapis.com/google.rpc.ErrorInfo"
        detail.value = _ErrorInfo(reason="STALE_FENCING_TOKEN", domain="lifeline").SerializeToString()
        error = FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "token 3 is not the current one",
                             [("grpc-status-details-bin", status.SerializeToString())])
        self.assertEqual("STALE_FENCING_TOKEN", reason_of(error))
        self.assertEqual("FAILED_PRECONDITION: token 3 is not the current one [STALE_FENCING_TOKEN]", describe(error))

    def test_garbage_status_details_give_no_reason(self):
        error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "x", [("grpc-status-details-bin", b"\xff\xff\xff")])
        self.assertEqual("", reason_of(error))


class BackoffTests(unittest.TestCase):
    policy = RetryPolicy()

    def test_the_readme_defaults(self):
        self.assertEqual((2, 0.1, 5.0, 10.0), (self.policy.immediate_retries, self.policy.base_delay,
                                               self.policy.max_delay, self.policy.budget))

    def test_the_cap_doubles_from_100_ms_and_stops_at_5_s(self):
        caps = [self.policy.backoff_cap(step) for step in range(10)]
        self.assertEqual([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0], [round(c, 6) for c in caps])
        self.assertEqual(5.0, self.policy.backoff_cap(10_000))  # no overflow

    def test_full_jitter_draws_between_zero_and_the_cap(self):
        for step in range(12):
            cap = self.policy.backoff_cap(step)
            self.assertEqual(0.0, self.policy.backoff(step, rng=lambda: 0.0))
            self.assertAlmostEqual(cap * 0.999999, self.policy.backoff(step, rng=lambda: 0.999999))
            for _ in range(50):
                self.assertTrue(0.0 <= self.policy.backoff(step) <= cap)

    def test_two_immediate_retries_then_backoff_until_10_s_after_the_first_failure(self):
        top = lambda: 1.0  # noqa: E731  the longest waits
        self.assertEqual(0.0, self.policy.next_wait(1, 0.0, top))
        self.assertEqual(0.0, self.policy.next_wait(2, 0.0, top))
        self.assertAlmostEqual(0.1, self.policy.next_wait(3, 0.0, top))
        self.assertAlmostEqual(0.2, self.policy.next_wait(4, 0.1, top))
        self.assertAlmostEqual(5.0, self.policy.next_wait(20, 1.0, top))
        self.assertAlmostEqual(1.5, self.policy.next_wait(20, 8.5, top))  # never past the budget
        self.assertIsNone(self.policy.next_wait(3, 10.0, top))
        self.assertIsNone(self.policy.next_wait(30, 12.0, top))

    def test_the_budget_also_ends_the_immediate_retries(self):
        # A black-holed network: each attempt lasts until its deadline; 10 s after the first began, give up.
        self.assertEqual(0.0, self.policy.next_wait(1, 5.0))
        self.assertIsNone(self.policy.next_wait(2, 10.0))

    def test_a_simulated_outage_gives_up_after_the_budget_with_waits_that_add_up_to_it(self):
        elapsed, failures, waits = 0.0, 0, []
        while True:
            failures += 1
            wait = self.policy.next_wait(failures, elapsed, rng=lambda: 1.0)
            if wait is None:
                break
            waits.append(wait)
            elapsed += wait
        self.assertEqual([0.0, 0.0], waits[:2])
        self.assertAlmostEqual(10.0, elapsed)
        self.assertTrue(all(w <= 5.0 for w in waits))


if __name__ == "__main__":
    unittest.main()

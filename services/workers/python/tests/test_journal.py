"""OutcomeJournal: the README's format, append with fsync, reload, compaction, a torn last line."""

import json
import os
import tempfile
import unittest

import _support  # noqa: F401  (puts the library on sys.path)
from lifeline_delivery import Outcome, OutcomeJournal, journal_file_name


class CountingFsync:
    def __init__(self):
        self.calls = 0

    def __call__(self, fd):
        self.calls += 1
        os.fsync(fd)


class JournalTests(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.dir = os.path.join(self._dir.name, "journal")  # created by the first append
        self.fsync = CountingFsync()

    def tearDown(self):
        self._dir.cleanup()

    def journal(self, name="py-1"):
        return OutcomeJournal(self.dir, name, fsync=self.fsync)

    def lines(self, journal):
        with open(journal.path, encoding="utf-8") as file:
            return file.read().splitlines()

    def test_the_file_is_named_after_the_worker_in_the_journal_directory(self):
        self.assertEqual(os.path.join(self.dir, "py-1.journal"), self.journal().path)
        self.assertEqual("a_b_c.journal", journal_file_name("a/b c"))
        self.assertEqual("worker.journal", journal_file_name(".."))

    def test_an_entry_has_the_readme_format_with_the_fencing_token_as_a_string(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 9007199254740993, '{"steps":5,"resumed_from":0}').journal_records())
        journal.append(Outcome.fail("t-2", 7, "DEMO_FAILURE", "boom", retryable=True, retry_after=1.5).journal_records())
        journal.append(Outcome("progress", "t-3", 8, progress={"percent": 40, "message": "step 2"}).journal_records())
        first, second, third = (json.loads(line) for line in self.lines(journal))
        self.assertEqual(["seq", "kind", "task_id", "fencing_token", "result", "at"], list(first))
        self.assertEqual({"seq": 1, "kind": "complete", "task_id": "t-1", "fencing_token": "9007199254740993",
                          "result": {"steps": 5, "resumed_from": 0}}, {k: v for k, v in first.items() if k != "at"})
        self.assertRegex(first["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual({"code": "DEMO_FAILURE", "message": "boom", "retryable": True, "retry_after_ms": 1500},
                         second["error"])
        self.assertEqual(("fail", "7", 2), (second["kind"], second["fencing_token"], second["seq"]))
        self.assertEqual({"percent": 40, "message": "step 2"}, third["progress"])
        self.assertEqual("progress", third["kind"])

    def test_an_outcome_with_unrecorded_progress_journals_the_progress_first(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 3, "1", progress={"percent": 80, "message": "m"}).journal_records())
        kinds = [json.loads(line)["kind"] for line in self.lines(journal)]
        self.assertEqual(["progress", "complete"], kinds)

    def test_append_fsyncs_the_file_before_it_returns_and_the_directory_when_it_creates_the_file(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 1, "1").journal_records())
        self.assertEqual(2, self.fsync.calls)  # the file, then the new directory entry
        journal.append(Outcome.complete("t-2", 2, "2").journal_records() + Outcome.complete("t-3", 3, "3").journal_records())
        self.assertEqual(3, self.fsync.calls)  # several entries: one write, one fsync
        self.assertEqual(3, len(self.lines(journal)))

    def test_a_new_journal_object_reads_what_an_earlier_run_left_in_order_and_continues_the_seq(self):
        first = self.journal()
        for n in range(1, 4):
            first.append(Outcome.complete(f"t-{n}", n, str(n)).journal_records())
        again = self.journal()
        entries = again.load()
        self.assertEqual([1, 2, 3], [e["seq"] for e in entries])
        self.assertEqual(["t-1", "t-2", "t-3"], [Outcome.from_journal(e).task_id for e in entries])
        self.assertEqual(2, Outcome.from_journal(entries[1]).fencing_token)
        again.append(Outcome.complete("t-4", 4, "4").journal_records())
        self.assertEqual(4, json.loads(self.lines(again)[-1])["seq"])

    def test_replayed_entries_round_trip(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 5, '{"echo":{"a":[1,2]}}').journal_records())
        journal.append(Outcome.fail("t-2", 6, "X", "m", retryable=True, details={"k": "v"}, retry_after=2).journal_records())
        journal.append(Outcome.complete("t-3", 7, "").journal_records())
        complete, failure, empty = (Outcome.from_journal(e) for e in self.journal().load())
        self.assertEqual({"echo": {"a": [1, 2]}}, json.loads(complete.result))
        self.assertEqual({"code": "X", "message": "m", "retryable": True, "details": {"k": "v"}}, failure.error)
        self.assertEqual(2.0, failure.retry_after)
        self.assertEqual("", empty.result)

    def test_remove_rewrites_the_file_with_what_is_left_through_a_renamed_temporary_file(self):
        journal = self.journal()
        for n in range(1, 5):
            journal.append(Outcome.complete(f"t-{n}", n, str(n)).journal_records())
        inode_before = os.stat(journal.path).st_ino
        fsyncs = self.fsync.calls
        self.assertEqual(2, journal.remove([1, 3]))
        self.assertEqual([2, 4], [json.loads(line)["seq"] for line in self.lines(journal)])
        self.assertNotEqual(inode_before, os.stat(journal.path).st_ino)  # renamed into place, not truncated
        self.assertFalse(os.path.exists(journal.path + ".tmp"))
        self.assertEqual(fsyncs + 2, self.fsync.calls)  # the temporary file, then the directory
        self.assertEqual(0, journal.remove([2, 4]))
        self.assertEqual([], self.lines(journal))  # rewritten empty
        self.assertEqual([], self.journal().load())

    def test_a_torn_last_line_is_ignored_and_cut_off_so_the_next_append_starts_a_clean_line(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 1, "1").journal_records())
        journal.append(Outcome.complete("t-2", 2, "2").journal_records())
        with open(journal.path, "ab") as file:
            file.write(b'{"seq":3,"kind":"complete","task_id":"t-3","fenc')  # the crash came mid-append
        again = self.journal()
        with self.assertLogs("lifeline.worker", "WARNING") as logs:
            entries = again.load()
        self.assertEqual([1, 2], [e["seq"] for e in entries])
        self.assertIn("torn last line", logs.output[0])
        again.append(Outcome.complete("t-4", 4, "4").journal_records())
        self.assertEqual([1, 2, 3], [json.loads(line)["seq"] for line in self.lines(again)])

    def test_a_complete_last_entry_without_its_newline_is_kept(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 1, "1").journal_records())
        with open(journal.path, "rb+") as file:
            file.truncate(os.path.getsize(journal.path) - 1)
        entries = self.journal().load()
        self.assertEqual(["t-1"], [e["task_id"] for e in entries])
        with open(journal.path, "rb") as file:
            self.assertTrue(file.read().endswith(b"\n"))

    def test_a_line_that_is_not_an_entry_is_skipped_with_a_warning(self):
        journal = self.journal()
        journal.append(Outcome.complete("t-1", 1, "1").journal_records())
        with open(journal.path, "a", encoding="utf-8") as file:
            file.write("garbage\n")
        journal.append(Outcome.complete("t-2", 2, "2").journal_records())
        with self.assertLogs("lifeline.worker", "WARNING"):
            entries = self.journal().load()
        self.assertEqual(["t-1", "t-2"], [e["task_id"] for e in entries])

    def test_no_file_means_an_empty_journal(self):
        self.assertEqual([], self.journal().load())
        self.assertEqual(0, len(self.journal()))


if __name__ == "__main__":
    unittest.main()

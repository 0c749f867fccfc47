extern alias worker;
using System.Globalization;
using System.Text.Json;
using worker::Lifeline.Worker.Internal;

namespace Lifeline.Workers.Tests.Dotnet;

/// <summary>The .NET worker's offline journal: format, durability, replay order, compaction, torn lines.</summary>
public sealed class OutcomeJournalTests : IDisposable
{
    private static readonly DateTimeOffset At = new(2025, 3, 1, 12, 30, 45, 123, TimeSpan.Zero);
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "lifeline-journal-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public void Entries_are_json_lines_in_the_documented_format()
    {
        var journal = OutcomeJournal.Open(_directory, "worker-a");
        Assert.False(File.Exists(journal.FilePath));
        journal.Append(
        [
            JournalEntry.ProgressReport("t1", 9_007_199_254_740_993, new JournalProgress(40, "step 2 of 5"), At),
            JournalEntry.Completion("t1", 9_007_199_254_740_993, """{"steps":5,"resumed_from":0}""", At),
            JournalEntry.Failure("t2", 7, new JournalError("HTTP_429", "slow down", true, new Dictionary<string, string> { ["upstream"] = "abc" }),
                TimeSpan.FromSeconds(30), At),
        ]);

        Assert.Equal(Path.Combine(_directory, "worker-a.journal"), journal.FilePath);
        var lines = File.ReadAllText(journal.FilePath).Split('\n');
        Assert.Equal(4, lines.Length);
        Assert.Equal("", lines[3]); // every line ends with a newline

        using var progress = JsonDocument.Parse(lines[0]);
        Assert.Equal(1, progress.RootElement.GetProperty("seq").GetInt64());
        Assert.Equal("progress", progress.RootElement.GetProperty("kind").GetString());
        Assert.Equal("t1", progress.RootElement.GetProperty("task_id").GetString());
        // Fencing tokens are strings: int64 does not fit a JSON number in every reader.
        Assert.Equal(JsonValueKind.String, progress.RootElement.GetProperty("fencing_token").ValueKind);
        Assert.Equal("9007199254740993", progress.RootElement.GetProperty("fencing_token").GetString());
        Assert.Equal(40, progress.RootElement.GetProperty("progress").GetProperty("percent").GetInt32());
        Assert.Equal("2025-03-01T12:30:45.123Z", progress.RootElement.GetProperty("at").GetString());
        Assert.True(DateTimeOffset.TryParse(progress.RootElement.GetProperty("at").GetString(), CultureInfo.InvariantCulture, out _));

        using var completion = JsonDocument.Parse(lines[1]);
        Assert.Equal("complete", completion.RootElement.GetProperty("kind").GetString());
        Assert.Equal(2, completion.RootElement.GetProperty("seq").GetInt64());
        Assert.Equal(5, completion.RootElement.GetProperty("result").GetProperty("steps").GetInt32()); // the result's JSON value, not text

        using var failure = JsonDocument.Parse(lines[2]);
        Assert.Equal("fail", failure.RootElement.GetProperty("kind").GetString());
        var error = failure.RootElement.GetProperty("error");
        Assert.Equal("HTTP_429", error.GetProperty("code").GetString());
        Assert.True(error.GetProperty("retryable").GetBoolean());
        Assert.Equal("abc", error.GetProperty("details").GetProperty("upstream").GetString());
        Assert.Equal(30_000, error.GetProperty("retry_after_ms").GetInt64());
    }

    [Fact]
    public void A_restarted_worker_reads_back_every_entry_in_order_and_numbers_on()
    {
        var first = OutcomeJournal.Open(_directory, "w");
        first.Append(JournalEntry.Completion("a", 1, """{"x":[1,2,{"y":null}]}""", At));
        first.Append(JournalEntry.Completion("b", 2, null, At));
        first.Append(JournalEntry.Completion("c", 3, "\"just text\"", At));
        first.Append(JournalEntry.Failure("d", 4, new JournalError("E", "m", false, new Dictionary<string, string>()), null, At));

        var second = OutcomeJournal.Open(_directory, "w");
        var entries = second.Snapshot();
        Assert.Equal(["a", "b", "c", "d"], entries.Select(e => e.TaskId));
        Assert.Equal([1L, 2, 3, 4], entries.Select(e => e.Seq));
        Assert.Equal([1L, 2, 3, 4], entries.Select(e => e.FencingToken));
        Assert.Equal("""{"x":[1,2,{"y":null}]}""", entries[0].Result);
        Assert.Null(entries[1].Result);
        Assert.Equal("\"just text\"", entries[2].Result);
        Assert.Equal(JournalEntryKind.Fail, entries[3].Kind);
        Assert.Null(entries[3].RetryAfter);
        Assert.False(entries[3].Error!.Retryable);
        Assert.Equal(At, entries[0].At);

        Assert.Equal(5, second.Append(JournalEntry.Completion("e", 5, null, At)).Seq);
    }

    [Fact]
    public void Each_append_is_on_disk_when_it_returns()
    {
        var journal = OutcomeJournal.Open(_directory, "w");
        for (var i = 1; i <= 20; i++)
        {
            journal.Append(JournalEntry.Completion($"t{i}", i, "{}", At));
            // Another reader (another process after a crash) sees every entry appended so far, whole.
            using var reader = new FileStream(journal.FilePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var text = new StreamReader(reader);
            var lines = text.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(i, lines.Length);
            Assert.All(lines, line => Assert.NotNull(JournalEntry.TryParse(line)));
        }
    }

    [Fact]
    public void Removing_replayed_entries_compacts_the_file_and_removing_the_last_deletes_it()
    {
        var journal = OutcomeJournal.Open(_directory, "w");
        var entries = journal.Append([.. Enumerable.Range(1, 6).Select(i => JournalEntry.Completion($"t{i}", i, "{}", At))]);

        journal.Remove([entries[0].Seq, entries[2].Seq, entries[4].Seq]);
        Assert.Equal(["t2", "t4", "t6"], journal.Snapshot().Select(e => e.TaskId));
        Assert.Equal(["t2", "t4", "t6"], OutcomeJournal.Open(_directory, "w").Snapshot().Select(e => e.TaskId));
        Assert.Equal(3, File.ReadAllLines(journal.FilePath).Length);
        Assert.False(File.Exists(journal.FilePath + ".tmp"));

        // Appends after a compaction land after what is left, numbered on.
        Assert.Equal(7, journal.Append(JournalEntry.Completion("t7", 7, "{}", At)).Seq);
        journal.Remove([.. journal.Snapshot().Select(e => e.Seq)]);
        Assert.True(journal.IsEmpty);
        Assert.False(File.Exists(journal.FilePath));
        Assert.Empty(Directory.GetFiles(_directory));
    }

    [Fact]
    public void A_line_torn_by_a_crash_is_dropped_and_the_file_repaired_before_the_next_append()
    {
        var journal = OutcomeJournal.Open(_directory, "w");
        journal.Append([JournalEntry.Completion("a", 1, "{}", At), JournalEntry.Completion("b", 2, "{}", At)]);
        var whole = File.ReadAllText(journal.FilePath);
        File.WriteAllText(journal.FilePath, whole + whole.Split('\n')[1][..25]); // a third line cut short, no newline

        var reopened = OutcomeJournal.Open(_directory, "w");
        Assert.Equal(1, reopened.UnreadableLines);
        Assert.Equal(["a", "b"], reopened.Snapshot().Select(e => e.TaskId));
        Assert.Equal(whole, File.ReadAllText(journal.FilePath));

        reopened.Append(JournalEntry.Completion("c", 3, "{}", At));
        Assert.Equal(["a", "b", "c"], OutcomeJournal.Open(_directory, "w").Snapshot().Select(e => e.TaskId));
    }

    [Fact]
    public void Each_worker_name_has_its_own_file_with_a_safe_name()
    {
        Assert.Equal("dotnet-host-42.journal", OutcomeJournal.FileNameFor("dotnet-host-42"));
        Assert.Equal("a_b_c_.journal", OutcomeJournal.FileNameFor("a/b c:"));
        Assert.Equal("_hidden.journal", OutcomeJournal.FileNameFor(".hidden"));
        Assert.Equal("_._.journal", OutcomeJournal.FileNameFor("../")); // no separator, never hidden

        OutcomeJournal.Open(_directory, "one").Append(JournalEntry.Completion("a", 1, "{}", At));
        Assert.True(OutcomeJournal.Open(_directory, "two").IsEmpty);
        Assert.Single(OutcomeJournal.Open(_directory, "one").Snapshot());
    }

    [Fact]
    public async Task Concurrent_appends_keep_every_entry_once_with_distinct_numbers()
    {
        var journal = OutcomeJournal.Open(_directory, "w");
        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 25; i++)
            {
                journal.Append(JournalEntry.Completion($"{t}-{i}", i + 1, "{}", At));
            }
        })));

        var entries = OutcomeJournal.Open(_directory, "w").Snapshot();
        Assert.Equal(200, entries.Count);
        Assert.Equal(200, entries.Select(e => e.TaskId).Distinct().Count());
        Assert.Equal(Enumerable.Range(1, 200).Select(i => (long)i), entries.Select(e => e.Seq));
    }
}

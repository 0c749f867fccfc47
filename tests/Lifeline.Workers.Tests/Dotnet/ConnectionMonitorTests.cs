extern alias worker;
using worker::Lifeline.Worker;
using worker::Lifeline.Worker.Internal;

namespace Lifeline.Workers.Tests.Dotnet;

/// <summary>The .NET worker's connection state machine (connected → retrying → offline → syncing → connected), without a server.</summary>
public sealed class ConnectionMonitorTests
{
    private readonly ManualClock _clock = new();
    private readonly List<(ConnectionState From, ConnectionState To, string Reason)> _changes = [];

    private ConnectionMonitor Monitor(ConnectionState initial = ConnectionState.Connected) =>
        new(TimeSpan.FromSeconds(10), (from, to, reason) => _changes.Add((from, to, reason)), initial, _clock);

    [Fact]
    public void The_full_cycle_moves_once_per_step_with_a_reason()
    {
        var monitor = Monitor();
        Assert.Equal(ConnectionState.Retrying, monitor.ReportTransientFailure("Unavailable: reset"));
        _clock.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal(ConnectionState.Retrying, monitor.ReportTransientFailure("Unavailable: refused"));
        _clock.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(ConnectionState.Offline, monitor.ReportTransientFailure("DeadlineExceeded: late"));
        Assert.Equal(ConnectionState.Offline, monitor.ReportTransientFailure("still down"));
        Assert.Equal(ConnectionState.Syncing, monitor.ReportSuccess("probe answered"));
        Assert.False(monitor.TryCompleteSync(() => false, "not yet"));
        Assert.True(monitor.TryCompleteSync(() => true, "journal replayed"));

        Assert.Equal(
            [
                (ConnectionState.Connected, ConnectionState.Retrying),
                (ConnectionState.Retrying, ConnectionState.Offline),
                (ConnectionState.Offline, ConnectionState.Syncing),
                (ConnectionState.Syncing, ConnectionState.Connected),
            ],
            _changes.Select(c => (c.From, c.To)));
        Assert.Equal("Unavailable: reset", _changes[0].Reason);
        Assert.StartsWith("DeadlineExceeded: late", _changes[1].Reason, StringComparison.Ordinal);
        Assert.Contains("10 s", _changes[1].Reason, StringComparison.Ordinal);
        Assert.Equal("journal replayed", _changes[3].Reason);
    }

    [Fact]
    public void A_success_while_retrying_is_connected_again_and_the_next_failure_starts_a_new_clock()
    {
        var monitor = Monitor();
        monitor.ReportTransientFailure("a");
        _clock.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(ConnectionState.Connected, monitor.ReportSuccess());
        monitor.ReportTransientFailure("b");
        _clock.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(ConnectionState.Retrying, monitor.ReportTransientFailure("c"));
        Assert.Equal(3, _changes.Count);
    }

    [Fact]
    public void A_call_that_failed_by_its_deadline_failed_from_its_start()
    {
        var monitor = Monitor();
        var started = _clock.GetTimestamp();
        _clock.Advance(TimeSpan.FromSeconds(10)); // a black-holed call, failed by its 10 s deadline
        Assert.Equal(ConnectionState.Retrying, monitor.ReportTransientFailure("DeadlineExceeded", started));
        // The window began when that call did: the next failure is 10 s after the first one started.
        Assert.Equal(ConnectionState.Offline, monitor.ReportTransientFailure("DeadlineExceeded", _clock.GetTimestamp()));
    }

    [Fact]
    public void Successes_while_connected_and_failures_while_offline_change_nothing()
    {
        var monitor = Monitor();
        monitor.ReportSuccess();
        Assert.Empty(_changes);
        monitor.GoOffline("gave up");
        monitor.GoOffline("gave up again");
        monitor.ReportTransientFailure("down");
        Assert.Single(_changes);
        Assert.Equal((ConnectionState.Connected, ConnectionState.Offline, "gave up"), _changes[0]);
    }

    [Fact]
    public void A_transient_failure_while_syncing_goes_back_offline()
    {
        var monitor = Monitor(ConnectionState.Offline);
        monitor.ReportSuccess("probe");
        Assert.Equal(ConnectionState.Offline, monitor.ReportTransientFailure("Unavailable during replay"));
        Assert.Equal([ConnectionState.Syncing, ConnectionState.Offline], _changes.Select(c => c.To));
    }

    [Fact]
    public void A_worker_with_a_journal_starts_offline_and_sync_completes_only_from_syncing()
    {
        var monitor = Monitor(ConnectionState.Offline);
        Assert.Equal(ConnectionState.Offline, monitor.State);
        Assert.True(monitor.Journaling);
        Assert.False(monitor.TryCompleteSync(() => true, "too early"));
        Assert.True(monitor.WhenOffline.IsCompleted);
        Assert.False(monitor.WhenConnected.IsCompleted);
        Assert.Empty(_changes);
    }

    [Fact]
    public void Signals_follow_the_state()
    {
        var monitor = Monitor();
        Assert.True(monitor.WhenConnected.IsCompleted);
        var offline = monitor.WhenOffline;
        Assert.False(offline.IsCompleted);

        monitor.ReportTransientFailure("a");
        Assert.True(monitor.WhenNotJournaling.IsCompleted); // retrying still leases
        monitor.GoOffline("x");
        Assert.True(offline.IsCompleted);
        var leasing = monitor.WhenNotJournaling;
        Assert.False(leasing.IsCompleted);
        var connected = monitor.WhenConnected;
        Assert.False(connected.IsCompleted);

        monitor.ReportSuccess();
        Assert.False(monitor.WhenOffline.IsCompleted);
        Assert.False(connected.IsCompleted);
        Assert.False(leasing.IsCompleted); // nor while syncing
        monitor.TryCompleteSync(() => true, "done");
        Assert.True(connected.IsCompleted);
        Assert.True(leasing.IsCompleted);
    }

    [Fact]
    public void Outcomes_are_journaled_only_while_offline_or_syncing()
    {
        var monitor = Monitor();
        var journaled = 0;
        Assert.False(monitor.JournalIfOffline(() => journaled++));
        monitor.ReportTransientFailure("x");
        Assert.False(monitor.JournalIfOffline(() => journaled++));
        monitor.GoOffline("y");
        Assert.True(monitor.JournalIfOffline(() => journaled++));
        monitor.ReportSuccess();
        Assert.True(monitor.JournalIfOffline(() => journaled++));
        monitor.TryCompleteSync(() => true, "done");
        Assert.False(monitor.JournalIfOffline(() => journaled++));
        Assert.Equal(2, journaled);
    }

    [Fact]
    public async Task Transitions_from_many_threads_are_reported_in_order_and_each_is_a_legal_step()
    {
        var changes = new List<(ConnectionState From, ConnectionState To)>();
        var monitor = new ConnectionMonitor(TimeSpan.FromMilliseconds(1), (from, to, _) => changes.Add((from, to)));
        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            var random = new Random(t);
            for (var i = 0; i < 20_000; i++)
            {
                switch (random.Next(4))
                {
                    case 0: monitor.ReportTransientFailure("f"); break;
                    case 1: monitor.ReportSuccess(); break;
                    case 2: monitor.GoOffline("g"); break;
                    default: monitor.TryCompleteSync(() => true, "s"); break;
                }
            }
        })));

        HashSet<(ConnectionState, ConnectionState)> legal =
        [
            (ConnectionState.Connected, ConnectionState.Retrying), (ConnectionState.Retrying, ConnectionState.Connected),
            (ConnectionState.Retrying, ConnectionState.Offline), (ConnectionState.Offline, ConnectionState.Syncing),
            (ConnectionState.Syncing, ConnectionState.Connected), (ConnectionState.Syncing, ConnectionState.Offline),
            (ConnectionState.Connected, ConnectionState.Offline),
        ];
        Assert.NotEmpty(changes);
        Assert.Equal(ConnectionState.Connected, changes[0].From);
        for (var i = 0; i < changes.Count; i++)
        {
            Assert.Contains(changes[i], legal);
            if (i > 0)
            {
                Assert.Equal(changes[i - 1].To, changes[i].From);
            }
        }

        Assert.Equal(changes[^1].To, monitor.State);
    }
}

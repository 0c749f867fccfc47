using System.Globalization;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;

namespace Lifeline.Recovery.SystemState;

/// <summary>
/// Keeps the persisted system state, on the leader only (standbys serve reads from the table). At the start
/// of each term it restores the newest snapshot (<see cref="RestoreAndReconcileAsync"/>); then it writes a
/// snapshot when the status, the worker pool or the queue counts change (reason <c>change</c>), at least
/// every <c>StateSnapshotInterval</c> (<c>periodic</c>), and one with status SHUTTING_DOWN when the service
/// stops (<c>shutdown</c>). Writes are fenced by the leader's term.
/// </summary>
public sealed partial class SystemStateKeeper(
    [FromKeyedServices(RecoveryLeadership.Role)] LeaderElection leader, SystemStateStore store, SystemStateCollector collector, IOptions<RecoveryOptions> options,
    TimeProvider time, ILogger<SystemStateKeeper> logger)
    : LeaderLoop(leader, logger, LoopBackoff.Between(Poll(options.Value), TimeSpan.FromSeconds(30)), time)
{
    private const int PruneEvery = 100;
    private static readonly TimeSpan MaxPoll = TimeSpan.FromSeconds(5);

    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private StateContent? _last;
    private DateTime _lastWrittenAt;
    private int _writesSincePrune;
    private long _restoredInTerm; // the token of the term whose start was restored

    /// <summary>
    /// Restores the newest snapshot and reconciles it with the live system, and writes the result: status
    /// ERROR when the snapshot is refused (a missing or malformed field, another major format version),
    /// else <c>restored</c> with stale workers cleaned out and counts taken from the live queue and registry
    /// (the message says what changed), or <c>startup</c> when there is none. Called at the start of each
    /// term, and by the disaster-recovery <c>state_recovery</c> step. On the leader the write is fenced by its
    /// term; elsewhere it is written unfenced (an explicit request).
    /// </summary>
    public async Task<V1.SystemState> RestoreAndReconcileAsync(CancellationToken ct)
    {
        var term = Leader.Term;
        await _writeGate.WaitAsync(ct);
        try
        {
            var persisted = await store.LatestAsync(ct);
            var live = await collector.CollectAsync(ct);
            var (content, reason, message) = Reconcile(persisted, live);
            var written = await store.InsertAsync(content, reason, message, term, ct)
                ?? throw new SnapshotFencedException(Leader.Holder);
            Remember(content, written);
            await store.PruneAsync(ct);
            _writesSincePrune = 0;
            LogRestored(logger, reason, content.Status, message);
            return SystemStateFormat.ToProto(written);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private static (StateContent Content, string Reason, string Message) Reconcile(SystemStateEntity? persisted, LiveState live)
    {
        var problems = live.Unreachable.Count == 0 ? "" : "; unreachable: " + string.Join("; ", live.Unreachable);
        if (persisted is null)
        {
            return (FromLive(live, live.Status, WorkerPool.Empty, new Dictionary<string, long>()), "startup",
                "no persisted state: started from the live queue and registry" + problems);
        }
        var restored = SystemStateFormat.Validate(persisted, out var refusal);
        if (restored is null)
        {
            return (FromLive(live, SystemStatus.Error, WorkerPool.Empty, new Dictionary<string, long>()), "startup",
                refusal + "; continuing from the live queue and registry" + problems);
        }

        var notes = new List<string> { $"restored snapshot {persisted.Id} of {persisted.CreatedAt.ToString("O", CultureInfo.InvariantCulture)}" };
        var pool = restored.Pool;
        if (live.AllWorkers is { } all)
        {
            var known = all.ToDictionary(w => (w.Tenant, w.Id));
            var stale = restored.Pool.Workers
                .Select(w => (Worker: w, Why: !known.TryGetValue((w.Tenant, w.Id), out var now) ? "unknown to the registry"
                    : now.Status == "deregistered" ? "deregistered" : null))
                .Where(x => x.Why is not null)
                .ToList();
            notes.Add(stale.Count == 0
                ? "no stale workers"
                : $"cleaned out {stale.Count} stale worker(s): " + string.Join(", ",
                    stale.Select(s => $"{s.Worker.Tenant}/{s.Worker.Id} ({(s.Worker.Name.Length > 0 ? s.Worker.Name : "unnamed")}, {s.Why})")));
            var livePool = live.Pool!;
            if (!livePool.SameCounts(restored.Pool))
            {
                notes.Add($"worker pool reconciled with the registry: total {restored.Pool.Total} → {livePool.Total}, online {restored.Pool.Online} → {livePool.Online}, "
                    + $"busy {restored.Pool.Busy} → {livePool.Busy}, draining {restored.Pool.Draining} → {livePool.Draining}, offline {restored.Pool.Offline} → {livePool.Offline}");
            }
            pool = livePool;
        }
        else
        {
            notes.Add("stale workers not cleaned out: the registry could not be read");
        }
        var counts = restored.QueueCounts;
        if (live.QueueCounts is { } liveCounts)
        {
            var changed = restored.QueueCounts.Keys.Union(liveCounts.Keys).Order(StringComparer.Ordinal)
                .Where(k => restored.QueueCounts.GetValueOrDefault(k) != liveCounts.GetValueOrDefault(k))
                .Select(k => $"{k} {restored.QueueCounts.GetValueOrDefault(k)} → {liveCounts.GetValueOrDefault(k)}")
                .ToList();
            notes.Add(changed.Count == 0 ? "queue counts unchanged" : "queue counts reconciled with the queue: " + string.Join(", ", changed));
            counts = liveCounts;
        }
        else
        {
            notes.Add("queue counts not reconciled: the queue could not be read");
        }
        return (FromLive(live, live.Status, pool, counts), "restored", string.Join("; ", notes) + problems);
    }

    private static StateContent FromLive(LiveState live, SystemStatus status, WorkerPool fallbackPool, IReadOnlyDictionary<string, long> fallbackCounts) =>
        new(status, SystemStateFormat.CurrentVersion, live.Pool ?? fallbackPool, live.QueueCounts ?? fallbackCounts, live.Metrics, live.Configuration);

    private void Remember(StateContent content, SystemStateEntity written)
    {
        _last = content;
        _lastWrittenAt = written.CreatedAt;
    }

    /// <summary>At the start of a term: restore and reconcile (again each pass until it succeeds); then a snapshot when due.</summary>
    protected override async Task<TimeSpan> RunTermPassAsync(LeaderTerm term, CancellationToken ct)
    {
        if (_restoredInTerm != term.Term)
        {
            await RestoreAndReconcileAsync(ct);
            _restoredInTerm = term.Term;
        }
        else
        {
            await SnapshotIfDueAsync(ct);
        }
        return Poll(options.Value);
    }

    private static TimeSpan Poll(RecoveryOptions options) => options.StateSnapshotInterval < MaxPoll ? options.StateSnapshotInterval : MaxPoll;

    /// <summary>Writes a snapshot when something changed (<c>change</c>) or the interval passed (<c>periodic</c>).</summary>
    internal async Task SnapshotIfDueAsync(CancellationToken ct)
    {
        var live = await collector.CollectAsync(ct);
        var previous = _last;
        var content = FromLive(live, live.Status, previous?.Pool ?? WorkerPool.Empty, previous?.QueueCounts ?? new Dictionary<string, long>());
        var changes = previous is null ? ["first snapshot of this term"] : Changes(previous, content);
        var due = Time.GetUtcNow().UtcDateTime - _lastWrittenAt >= options.Value.StateSnapshotInterval;
        if (changes.Count == 0 && !due)
        {
            return;
        }
        var problems = live.Unreachable.Count == 0 ? "" : "unreachable: " + string.Join("; ", live.Unreachable);
        var message = string.Join("; ", changes.Append(problems).Where(s => s.Length > 0));
        await WriteAsync(content, changes.Count > 0 ? "change" : "periodic", message, ct);
    }

    private static List<string> Changes(StateContent before, StateContent now)
    {
        var changes = new List<string>();
        if (before.Status != now.Status)
        {
            changes.Add($"status {before.Status} → {now.Status}");
        }
        if (!before.Pool.SameCounts(now.Pool))
        {
            changes.Add($"worker pool total {before.Pool.Total} → {now.Pool.Total} (online {before.Pool.Online} → {now.Pool.Online}, "
                + $"busy {before.Pool.Busy} → {now.Pool.Busy}, draining {before.Pool.Draining} → {now.Pool.Draining}, offline {before.Pool.Offline} → {now.Pool.Offline})");
        }
        var counts = before.QueueCounts.Keys.Union(now.QueueCounts.Keys).Order(StringComparer.Ordinal)
            .Where(k => before.QueueCounts.GetValueOrDefault(k) != now.QueueCounts.GetValueOrDefault(k))
            .Select(k => $"{k} {before.QueueCounts.GetValueOrDefault(k)} → {now.QueueCounts.GetValueOrDefault(k)}")
            .ToList();
        if (counts.Count > 0)
        {
            changes.Add("queue counts " + string.Join(", ", counts));
        }
        return changes;
    }

    private async Task WriteAsync(StateContent content, string reason, string message, CancellationToken ct)
    {
        await _writeGate.WaitAsync(ct);
        try
        {
            var term = Leader.Term ?? throw new SnapshotFencedException(Leader.Holder);
            var written = await store.InsertAsync(content, reason, message, term, ct) ?? throw new SnapshotFencedException(Leader.Holder);
            Remember(content, written);
            if (++_writesSincePrune >= PruneEvery)
            {
                _writesSincePrune = 0;
                await store.PruneAsync(ct);
            }
        }
        finally
        {
            _writeGate.Release();
        }
    }

    protected override async Task RunLastPassAsync(CancellationToken cancellationToken)
    {
        if (Leader.Term is null || _last is not { } last)
        {
            return;
        }
        // No calls to other services on the way out: the last known content, marked shutting down.
        await WriteAsync(last with { Status = SystemStatus.ShuttingDown }, "shutdown", $"instance {Leader.Holder} is shutting down", cancellationToken);
    }

    public override void Dispose()
    {
        _writeGate.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 4008, Level = LogLevel.Information, Message = "System state {Reason} with status {Status}: {Message}")]
    private static partial void LogRestored(ILogger logger, string reason, SystemStatus status, string message);
}

/// <summary>
/// A snapshot write was refused by the leader fence: this instance does not lead, or a newer leader has
/// written since. FAILED_PRECONDITION <c>NOT_LEADER</c>.
/// </summary>
public sealed class SnapshotFencedException(string instance)
    : ServiceDefaults.Errors.PreconditionFailedException("NOT_LEADER",
        $"Recovery instance '{instance}' no longer leads: its term has ended, so it writes no system state.");

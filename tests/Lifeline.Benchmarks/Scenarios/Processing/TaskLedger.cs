using System.Collections.Concurrent;
using System.Diagnostics;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>
/// The client's own account of a scenario's tasks: every lease and accepted completion by task id. It
/// catches a task handed out or completed twice, and marks the moment the last expected task completed
/// (which ends the timed run and cancels workers still long-polling).
/// </summary>
internal sealed class TaskLedger(int expected) : IDisposable
{
    private readonly ConcurrentDictionary<string, byte> _leased = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _completed = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _allCompleted = new();
    private int _completedCount;
    private int _duplicateLeases;
    private int _duplicateCompletions;
    private int _refusedCompletions;
    private long _finishedAt;

    public int Expected { get; } = expected;

    /// <summary>Cancelled once the expected number of distinct tasks completed.</summary>
    public CancellationToken AllCompleted => _allCompleted.Token;

    public int CompletedCount => Volatile.Read(ref _completedCount);

    /// <summary>Stopwatch timestamp of the last expected completion, or null while tasks are outstanding.</summary>
    public long? FinishedAt => Interlocked.Read(ref _finishedAt) is var t && t != 0 ? t : null;

    public bool Balanced =>
        CompletedCount == Expected && _leased.Count == Expected && _duplicateLeases == 0 && _duplicateCompletions == 0 && _refusedCompletions == 0;

    public void Leased(string taskId)
    {
        if (!_leased.TryAdd(taskId, 0))
        {
            Interlocked.Increment(ref _duplicateLeases);
        }
    }

    public void Completed(string taskId)
    {
        if (!_completed.TryAdd(taskId, 0))
        {
            Interlocked.Increment(ref _duplicateCompletions);
            return;
        }

        if (Interlocked.Increment(ref _completedCount) == Expected)
        {
            Interlocked.Exchange(ref _finishedAt, Stopwatch.GetTimestamp());
            _allCompleted.Cancel();
        }
    }

    public void Refused() => Interlocked.Increment(ref _refusedCompletions);

    public override string ToString() =>
        $"{CompletedCount}/{Expected} completed, {_leased.Count} leased" +
        (_duplicateLeases > 0 ? $", {_duplicateLeases} LEASED TWICE" : "") +
        (_duplicateCompletions > 0 ? $", {_duplicateCompletions} COMPLETED TWICE" : "") +
        (_refusedCompletions > 0 ? $", {_refusedCompletions} completions refused" : "");

    public void Dispose() => _allCompleted.Dispose();
}

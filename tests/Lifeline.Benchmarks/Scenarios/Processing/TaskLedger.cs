using System.Collections.Concurrent;
using System.Diagnostics;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>
/// The client's own account of a row's tasks: every lease (or push, or handler start) and every accepted completion by
/// task id. It catches a task handed out or completed twice, or leased and never completed, and marks the moment the
/// last of the row's <see cref="Expected"/> tasks completed (its backlog is exhausted: nothing is left to lease).
/// </summary>
internal sealed class TaskLedger(long expected) : IDisposable
{
    private readonly ConcurrentDictionary<string, byte> _leased = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _completed = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _exhausted = new();
    private long _completedCount;
    private int _duplicateLeases;
    private int _duplicateCompletions;
    private int _refusedCompletions;
    private long _finishedAt;

    /// <summary>The tasks there are to take (the row's backlog); <see cref="long.MaxValue"/> when producers keep adding.</summary>
    public long Expected { get; } = expected;

    /// <summary>Cancelled once <see cref="Expected"/> distinct tasks completed.</summary>
    public CancellationToken Exhausted => _exhausted.Token;

    public long CompletedCount => Interlocked.Read(ref _completedCount);

    public long LeasedCount => _leased.Count;

    /// <summary>Stopwatch timestamp of the last expected completion, or null while tasks are outstanding.</summary>
    public long? FinishedAt => Interlocked.Read(ref _finishedAt) is var t && t != 0 ? t : null;

    /// <summary>Every task leased was completed once, none twice, none refused, none leased twice.</summary>
    public bool Balanced =>
        CompletedCount == _leased.Count && _duplicateLeases == 0 && _duplicateCompletions == 0 && _refusedCompletions == 0 &&
        _completed.Keys.All(_leased.ContainsKey);

    /// <summary>Handed out twice (leased, pushed or started by a handler again while the row ran).</summary>
    public int DuplicateLeases => Volatile.Read(ref _duplicateLeases);

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
            _exhausted.Cancel();
        }
    }

    public void Refused() => Interlocked.Increment(ref _refusedCompletions);

    public override string ToString() =>
        $"{CompletedCount:N0} completed of {_leased.Count:N0} leased" +
        (_duplicateLeases > 0 ? $", {_duplicateLeases} LEASED TWICE" : "") +
        (_duplicateCompletions > 0 ? $", {_duplicateCompletions} COMPLETED TWICE" : "") +
        (_refusedCompletions > 0 ? $", {_refusedCompletions} completions refused" : "");

    public void Dispose() => _exhausted.Dispose();
}

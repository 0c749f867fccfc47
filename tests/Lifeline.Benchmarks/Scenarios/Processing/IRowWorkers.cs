using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>
/// The workers of one row, whatever way they take tasks (long poll, dispatch stream, worker library). They run from
/// <see cref="Start"/> until <see cref="StopAsync"/>, which the row calls only once nothing of its task type can be leased
/// any more (its backlog exhausted or cut, every leased task ended), so stopping loses nothing.
/// </summary>
internal interface IRowWorkers : IAsyncDisposable
{
    /// <summary>Completions the queue accepted so far (the row's counter).</summary>
    long Completed { get; }

    /// <summary>Cancelled once the row's backlog is done (every one of its tasks completed).</summary>
    CancellationToken Exhausted { get; }

    CallErrors Errors { get; }

    void Start(CancellationToken ct);

    /// <summary>
    /// When the window ends: take no new task where the path allows it without losing one (long poll: no next
    /// LeaseTasks; dispatch: capacity 0), tasks already taken are still completed. The backlog is cut after this.
    /// </summary>
    Task PauseAsync();

    Task StopAsync();

    /// <summary>Call latencies, of calls that started inside the measurement window.</summary>
    IReadOnlyDictionary<string, LatencySummary> Calls();

    /// <summary>The workers' own account: every task taken was completed exactly once (their ledger, or the library's counts).</summary>
    (bool Ok, string Text) CheckAccounts();
}

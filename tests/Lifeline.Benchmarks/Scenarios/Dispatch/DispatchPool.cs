using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Processing;

namespace Lifeline.Benchmarks.Scenarios.Dispatch;

/// <summary><see cref="DispatchWorker"/>s on one task type, one stream each, sharing a ledger: the dispatch rows' workers.</summary>
internal sealed class DispatchPool : IRowWorkers
{
    private readonly DispatchWorker[] _workers;
    private readonly TaskLedger _ledger;

    public DispatchPool(
        QueueConnection connection, string taskType, int workers, int slots, TaskLedger ledger, MeasurementWindow? window, TimeSpan streamDeadline,
        Action<string>? onTask = null)
    {
        _ledger = ledger;
        _workers = Enumerable.Range(1, workers)
            .Select(i => new DispatchWorker(connection, $"{taskType}-dispatch-{i}", taskType, slots, ledger, Errors, window, onTask, streamDeadline))
            .ToArray();
    }

    private Task _opening = Task.CompletedTask;
    private bool _stopped;

    public CallErrors Errors { get; } = new();

    public long Completed => _ledger.CompletedCount;

    public CancellationToken Exhausted => _ledger.Exhausted;

    /// <summary>The service's answer when it does not implement Dispatch; null otherwise.</summary>
    public string? Unimplemented => _workers.Select(w => w.Unimplemented).FirstOrDefault(u => u is not null);

    public void Start(CancellationToken ct) =>
        _opening = Task.WhenAll(_workers.Select(w => w.OpenAsync(ct)));

    public async Task PauseAsync()
    {
        await _opening;
        await Task.WhenAll(_workers.Select(w => w.PauseAsync()));
    }

    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _opening;
        await Task.WhenAll(_workers.Select(w => w.CloseAsync()));
    }

    public IReadOnlyDictionary<string, LatencySummary> Calls() => CallTimings.Summarize(_workers.Select(w => w.Timings));

    public (bool Ok, string Text) CheckAccounts() => (_ledger.Balanced, _ledger.ToString());

    public async ValueTask DisposeAsync() => await StopAsync();
}

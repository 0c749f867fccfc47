using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary><see cref="QueueWorker"/>s on one task type, sharing a ledger: the long-poll rows' workers.</summary>
internal sealed class WorkerPool : IRowWorkers
{
    private readonly QueueWorker[] _workers;
    private readonly TaskLedger _ledger;
    private CancellationTokenSource? _stop;
    private Task _running = Task.CompletedTask;

    public WorkerPool(
        QueueConnection connection, string taskType, int workers, TaskPath path, int batchSize, TaskLedger ledger, MeasurementWindow? window,
        Action<string>? onTask = null)
    {
        _ledger = ledger;
        _workers = Enumerable.Range(1, workers)
            .Select(i => new QueueWorker(connection, $"{taskType}-worker-{i}", taskType, path, batchSize, ledger, Errors, window, onTask))
            .ToArray();
    }

    public CallErrors Errors { get; } = new();

    public long Completed => _ledger.CompletedCount;

    public CancellationToken Exhausted => _ledger.Exhausted;

    public void Start(CancellationToken ct)
    {
        _stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = _stop.Token;
        _running = Task.WhenAll(_workers.Select(w => Task.Run(() => w.RunAsync(token), CancellationToken.None)));
    }

    /// <summary>Runs until the ledger's backlog is done, or <paramref name="ct"/> ends (a warm-up or a drain).</summary>
    public async Task RunToExhaustionAsync(CancellationToken ct)
    {
        using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, _ledger.Exhausted);
        Start(both.Token);
        await _running;
    }

    public async Task PauseAsync()
    {
        foreach (var worker in _workers)
        {
            worker.Pause();
        }

        await _running;
    }

    public async Task StopAsync()
    {
        if (_stop is not null)
        {
            await _stop.CancelAsync();
        }

        await _running;
    }

    public IReadOnlyDictionary<string, LatencySummary> Calls() => CallTimings.Summarize(_workers.Select(w => w.Timings));

    public (bool Ok, string Text) CheckAccounts() => (_ledger.Balanced, _ledger.ToString());

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop?.Dispose();
    }
}

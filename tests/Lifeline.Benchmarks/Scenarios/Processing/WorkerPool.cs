using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>Runs a number of <see cref="QueueWorker"/>s on one task type until their ledger is complete or the token is cancelled.</summary>
internal sealed class WorkerPool
{
    private readonly QueueWorker[] _workers;
    private readonly TaskLedger _ledger;

    public WorkerPool(QueueConnection connection, string taskType, int workers, WorkerPlan plan, TaskLedger ledger, CallErrors errors)
    {
        _ledger = ledger;
        _workers = Enumerable.Range(1, workers)
            .Select(i => new QueueWorker(connection, $"{taskType}-worker-{i}", taskType, plan, ledger, errors))
            .ToArray();
    }

    public IEnumerable<CallTimings> Timings => _workers.Select(w => w.Timings);

    public async Task RunAsync(CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct, _ledger.AllCompleted);
        await Task.WhenAll(_workers.Select(w => Task.Run(() => w.RunAsync(stop.Token), CancellationToken.None)));
    }
}

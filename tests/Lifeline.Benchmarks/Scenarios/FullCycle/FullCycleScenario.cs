using System.Diagnostics;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.Processing;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.FullCycle;

/// <summary>How a warm-up went: every task accounted for, and how fast (for the log line only).</summary>
internal sealed record WarmUpResult(string Name, double TasksPerSecond, bool Verified, string Check, IReadOnlyList<string> ErrorDetails);

/// <summary>
/// The queue section's warm-up: producers enqueue while workers lease, start and complete, all at once, so every call
/// (EnqueueTask, EnqueueTasks, LeaseTasks, StartTask, CompleteTask, CompleteTasks) runs before anything is measured —
/// the JIT, the connection and database pools, the statistics keeper's first look. Checked like a row, not reported as one.
/// </summary>
internal static class FullCycleScenario
{
    public static async Task<WarmUpResult> RunAsync(ScenarioContext context, FullCycleCase cell, string taskType, CancellationToken ct)
    {
        var errors = new CallErrors();
        var producer = new TaskProducer(context.Connection, taskType, cell.Tasks, cell.EnqueueBatchSize, errors);
        using var ledger = new TaskLedger(cell.Tasks);
        await using var pool = new WorkerPool(context.Connection, taskType, cell.Workers, TaskPath.ThreeCalls, cell.BatchSize, ledger, window: null);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(context.Profile.RowTimeout);
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(producer.RunAsync(cell.Producers, timeout.Token), pool.RunToExhaustionAsync(timeout.Token));
        ct.ThrowIfCancellationRequested();
        var seconds = ScenarioContext.SecondsSince(started, ledger.FinishedAt ?? Stopwatch.GetTimestamp());
        var stored = await context.CheckStoredCountsAsync(taskType, TaskStatus.Completed, cell.Tasks, ct);
        var verified = ledger.FinishedAt is not null && ledger.Balanced && stored.Ok;
        var name = $"W={cell.Workers} B={cell.BatchSize} + {cell.Producers} producers × {(cell.EnqueueBatchSize == 1 ? "EnqueueTask" : $"EnqueueTasks of {cell.EnqueueBatchSize}")}";
        return new WarmUpResult(name, ledger.CompletedCount / seconds, verified,
            verified ? $"ok: {stored.Text} once each" : $"MISMATCH: {ledger}; {stored.Text}", [.. errors.Distinct.Concat(pool.Errors.Distinct)]);
    }
}

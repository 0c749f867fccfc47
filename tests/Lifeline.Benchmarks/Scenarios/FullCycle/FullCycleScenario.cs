using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.Processing;

namespace Lifeline.Benchmarks.Scenarios.FullCycle;

/// <summary>
/// End to end: producers enqueue while workers lease, start and complete, all at once, so enqueue and
/// dequeue contend for the same table and workers wait on the queue's wake-up signal whenever they
/// catch up. The clock runs from the first enqueue to the last completion.
/// </summary>
internal static class FullCycleScenario
{
    public static async Task<ScenarioResult> RunAsync(ScenarioContext context, FullCycleCase cell, string taskType, CancellationToken ct)
    {
        var errors = new CallErrors();
        var producer = new TaskProducer(context.Connection, taskType, cell.Tasks, cell.EnqueueBatchSize, errors);
        using var ledger = new TaskLedger(cell.Tasks);
        var pool = new WorkerPool(context.Connection, taskType, cell.Workers, new WorkerPlan(cell.BatchSize, StartEachTask: true), ledger, errors);
        IReadOnlyList<CallTimings> producerTimings = [];
        var (seconds, timedOut) = await ProcessingScenario.RunTimedAsync(context, async token =>
        {
            var producing = producer.RunAsync(cell.Producers, token);
            await Task.WhenAll(producing, pool.RunAsync(token));
            producerTimings = await producing;
        }, ledger, ct);

        var enqueue = cell.EnqueueBatchSize == 1 ? "EnqueueTask" : $"EnqueueTasks of {cell.EnqueueBatchSize}";
        return await ProcessingScenario.CompleteResultAsync(
            context, "full-cycle", $"W={cell.Workers} B={cell.BatchSize} + {cell.Producers} producers × {enqueue}",
            cell.Workers, cell.BatchSize, taskType, seconds, timedOut, ledger,
            CallTimings.Summarize(pool.Timings.Concat(producerTimings)), errors, ct);
    }
}

using System.Diagnostics;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>
/// Processing throughput: the tasks are enqueued first (untimed), then W workers lease B at a time,
/// start each and complete them until all are done. The clock runs from the workers' start to the
/// last completion. A lease+start fused cell (kind <see cref="FusedKind"/>) leases with start = true
/// instead of calling StartTask for each task: not the specified lease → start → complete cycle, so
/// its rows are reported apart.
/// </summary>
internal static class ProcessingScenario
{
    private const int PrefillBatchSize = 1_000;
    private const int PrefillCallers = 4;

    public const string Kind = "processing";
    public const string FusedKind = "fused";

    public static async Task<ScenarioResult> RunAsync(ScenarioContext context, ProcessingCase cell, CancellationToken ct)
    {
        var taskType = $"{(cell.LeaseAndStart ? "fused" : "processing")}-w{cell.Workers}-b{cell.BatchSize}";
        var errors = new CallErrors();
        var prefill = new TaskProducer(context.Connection, taskType, cell.Tasks, PrefillBatchSize, errors);
        await prefill.RunAsync(PrefillCallers, ct);
        if (prefill.Created != cell.Tasks)
        {
            throw new InvalidOperationException(
                $"Enqueuing {cell.Tasks} tasks for {taskType} created {prefill.Created}: {string.Join("; ", errors.Distinct)}");
        }

        using var ledger = new TaskLedger(cell.Tasks);
        var plan = cell.LeaseAndStart
            ? new WorkerPlan(cell.BatchSize, StartEachTask: false, LeaseAndStart: true)
            : new WorkerPlan(cell.BatchSize, StartEachTask: true);
        var pool = new WorkerPool(context.Connection, taskType, cell.Workers, plan, ledger, errors);
        var (seconds, timedOut) = await RunTimedAsync(context, pool.RunAsync, ledger, ct);

        return await CompleteResultAsync(
            context, cell.LeaseAndStart ? FusedKind : Kind,
            $"W={cell.Workers} B={cell.BatchSize}{(cell.LeaseAndStart ? " lease+start fused" : "")}", cell.Workers, cell.BatchSize, taskType,
            seconds, timedOut, ledger, CallTimings.Summarize(pool.Timings), errors, ct);
    }

    /// <summary>Completes every task of <paramref name="taskType"/> without starting it (cleanup after an enqueue-only scenario); untimed.</summary>
    public static async Task<(bool Ok, string Text)> DrainAsync(ScenarioContext context, string taskType, int count, CancellationToken ct)
    {
        var errors = new CallErrors();
        using var ledger = new TaskLedger(count);
        var pool = new WorkerPool(context.Connection, taskType, workers: 2, new WorkerPlan(BatchSize: 500, StartEachTask: false), ledger, errors);
        var (_, timedOut) = await RunTimedAsync(context, pool.RunAsync, ledger, ct);
        var stored = await context.CheckStoredCountsAsync(taskType, TaskStatus.Completed, count, ct);
        var ok = !timedOut && ledger.Balanced && stored.Ok && errors.Count == 0;
        return (ok, ok ? "drained once each" : $"DRAIN MISMATCH: {ledger}; {stored.Text}; {errors.Count} errors");
    }

    /// <summary>Runs <paramref name="work"/> until the ledger is complete or the cell times out; seconds to the last completion.</summary>
    public static async Task<(double Seconds, bool TimedOut)> RunTimedAsync(
        ScenarioContext context, Func<CancellationToken, Task> work, TaskLedger ledger, CancellationToken ct)
    {
        using var cell = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cell.CancelAfter(context.Profile.CellTimeout);
        var started = Stopwatch.GetTimestamp();
        await work(cell.Token);
        ct.ThrowIfCancellationRequested();
        var finished = ledger.FinishedAt;
        return (ScenarioContext.SecondsSince(started, finished ?? Stopwatch.GetTimestamp()), finished is null);
    }

    /// <summary>Checks the ledger and the stored counts, reads the service's memory and builds the row.</summary>
    public static async Task<ScenarioResult> CompleteResultAsync(
        ScenarioContext context, string kind, string name, int workers, int batchSize, string taskType, double seconds, bool timedOut,
        TaskLedger ledger, IReadOnlyDictionary<string, LatencySummary> latencies, CallErrors errors, CancellationToken ct)
    {
        var stored = await context.CheckStoredCountsAsync(taskType, TaskStatus.Completed, ledger.Expected, ct);
        var verified = !timedOut && ledger.Balanced && stored.Ok;
        var check = verified
            ? $"ok: {stored.Text} once each"
            : $"{(timedOut ? $"TIMEOUT after {seconds:0} s; " : "")}MISMATCH: {ledger}; {stored.Text}";
        return new ScenarioResult(
            kind, name, workers, batchSize, ledger.Expected, seconds, ledger.CompletedCount / seconds, latencies,
            errors.Count, errors.Distinct, verified, check, context.Target.ReadMemory());
    }
}

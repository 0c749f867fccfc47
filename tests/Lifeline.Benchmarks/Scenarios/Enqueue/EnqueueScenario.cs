using System.Diagnostics;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Processing;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Enqueue;

/// <summary>
/// Enqueue throughput: concurrent callers enqueue a fresh task type, one task per EnqueueTask or a
/// batch per EnqueueTasks. Afterwards (untimed) the stored count is checked and the tasks are drained,
/// so they neither linger in the service nor slow later scenarios.
/// </summary>
internal static class EnqueueScenario
{
    public static async Task<ScenarioResult> RunAsync(ScenarioContext context, EnqueueCase cell, CancellationToken ct)
    {
        var taskType = $"enqueue-b{cell.BatchSize}";
        var errors = new CallErrors();
        var producer = new TaskProducer(context.Connection, taskType, cell.Tasks, cell.BatchSize, errors);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(context.Profile.CellTimeout);
        var started = Stopwatch.GetTimestamp();
        var timings = await producer.RunAsync(cell.Callers, timeout.Token);
        var seconds = ScenarioContext.SecondsSince(started, Stopwatch.GetTimestamp());
        ct.ThrowIfCancellationRequested();
        var timedOut = timeout.IsCancellationRequested;

        var stored = await context.CheckStoredCountsAsync(taskType, TaskStatus.Pending, cell.Tasks, ct);
        var memory = context.Target.ReadMemory();
        var drained = await ProcessingScenario.DrainAsync(context, taskType, producer.Created, ct);
        var verified = !timedOut && producer.Created == cell.Tasks && stored.Ok && drained.Ok;
        var check = verified
            ? $"ok: {stored.Text}, {drained.Text}"
            : $"{(timedOut ? "TIMEOUT; " : "")}MISMATCH: created {producer.Created}/{cell.Tasks}; {stored.Text}; {drained.Text}";
        var name = cell.BatchSize == 1
            ? $"EnqueueTask × {cell.Callers} callers"
            : $"EnqueueTasks of {cell.BatchSize} × {cell.Callers} callers";
        return new ScenarioResult(
            "enqueue", name, cell.Callers, cell.BatchSize, cell.Tasks, seconds, producer.Created / seconds,
            CallTimings.Summarize(timings), errors.Count, errors.Distinct, verified, check, memory);
    }
}

using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Processing;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Enqueue;

/// <summary>
/// An enqueue row: concurrent callers enqueue the row's own task type, one task per EnqueueTask or a batch per
/// EnqueueTasks, for the warm-up and the window; the window counts the tasks whose call was answered in it. Then the
/// callers stop (calls in flight finish), and the queue's stored count must equal the tasks the service said it created.
/// The tasks are removed afterwards (or, on a service whose database this run does not have, drained), so they neither
/// linger nor slow later rows.
/// </summary>
internal static class EnqueueScenario
{
    public const string Kind = "enqueue";

    public static async Task<QueueRow> RunAsync(ScenarioContext context, EnqueueRowSpec spec, CancellationToken ct)
    {
        var taskType = context.TaskTypeOf(spec.Id);
        var errors = new CallErrors();
        var name = spec.BatchSize == 1 ? $"EnqueueTask, {spec.Callers} callers" : $"EnqueueTasks of {spec.BatchSize:N0}, {spec.Callers} callers";
        var (atStart, note) = await RowSupport.StatisticsAtStartAsync(context, wait: true, ct);
        TaskProducer? producer = null;
        var window = new MeasurementWindow(() => producer?.Created ?? 0, context.CpuSources);
        producer = new TaskProducer(context.Connection, taskType, int.MaxValue - spec.BatchSize * (spec.Callers + 1), spec.BatchSize, errors, window);

        using var rowTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        rowTimeout.CancelAfter(context.Profile.RowTimeout);
        var producing = producer.RunAsync(spec.Callers, rowTimeout.Token);
        await window.RunAsync(context.Profile.RowWarmUp, context.Profile.Window, CancellationToken.None, null, rowTimeout.Token);
        producer.Stop();
        var timings = await producing;
        ct.ThrowIfCancellationRequested();
        var timedOut = rowTimeout.IsCancellationRequested;

        var stored = await context.CheckStoredCountsAsync(taskType, TaskStatus.Pending, producer.Created, ct);
        var memory = context.Target.ReadMemory();
        var verified = !timedOut && stored.Ok && errors.Count == 0;
        var check = verified
            ? $"ok: {stored.Text} (as created)"
            : $"{(timedOut ? "TIMEOUT; " : "")}MISMATCH: the service created {producer.Created:N0}; {stored.Text}; {errors.Count} failed calls";
        string? during;
        if (context.Database is null)
        {
            var drained = await ProcessingScenario.DrainAsync(context, taskType, producer.Created, ct);
            verified &= drained.Ok;
            check += $"; {drained.Text}";
            during = null;
        }
        else
        {
            during = await RowSupport.FinishAsync(context, taskType, atStart, remove: true, ct);
        }

        var calls = CallTimings.Summarize(timings);
        return new QueueRow(
            spec.Id, Kind, name, context.Pass, spec.Callers, spec.BatchSize, null, window.Count, window.Seconds, window.PerSecond, calls, null,
            TaskCpu.Of(window.Cpu, window.Count), atStart, during, window.Timeline,
            [TargetCheck.AtLeast("tasks/s", spec.TargetRate, window.PerSecond, "")], errors.Count, errors.Distinct, verified, check, memory, note);
    }
}

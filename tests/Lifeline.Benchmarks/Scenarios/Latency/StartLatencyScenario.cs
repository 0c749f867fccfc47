using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Dispatch;
using Lifeline.Benchmarks.Scenarios.Processing;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Latency;

/// <summary>
/// How soon an idle worker starts a newly enqueued task: the row's workers wait (long-polling LeaseTasks with start, on
/// their dispatch streams, or inside the worker library) while tasks are enqueued one per EnqueueTask at a steady rate,
/// on a fixed schedule (not after the previous answer). Each task's payload carries the moment just before its
/// EnqueueTask call was made (a <see cref="Stopwatch"/> timestamp: client and workers are this one process); the handler's
/// start — the lease's answer, the push, the library calling the handler — reads it. Tasks enqueued in the window count.
/// At the end every task must have been completed exactly once.
/// </summary>
internal static class StartLatencyScenario
{
    public const string Kind = "latency";
    public const string EnqueueCall = "EnqueueTask";

    public static async Task<QueueRow> RunAsync(ScenarioContext context, StartLatencyRowSpec spec, CancellationToken ct)
    {
        var profile = context.Profile;
        var taskType = context.TaskTypeOf(spec.Id);
        var name = $"enqueue → handler start, {Describe(spec)}, {spec.PerSecond:0} tasks/s one at a time";
        if (spec.Path == TaskPath.Dispatch && context.DispatchUnavailable is { } reason)
        {
            return QueueRow.Unavailable(spec.Id, Kind, name, context.Pass, spec.Workers, 1, reason, Targets(spec, null));
        }

        var (atStart, note) = await RowSupport.StatisticsAtStartAsync(context, wait: true, ct);
        using var rowTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        rowTimeout.CancelAfter(profile.RowTimeout);
        using var ledger = new TaskLedger(long.MaxValue);
        var expected = (int)(spec.PerSecond * (profile.RowWarmUp + profile.LatencyWindow).TotalSeconds) + 100;
        var latencies = new LatencyRecorder(expected);
        IRowWorkers? workers = null;
        var window = new MeasurementWindow(() => workers?.Completed ?? 0, context.CpuSources);
        var errors = new CallErrors();
        void OnStart(string payload)
        {
            var now = Stopwatch.GetTimestamp();
            switch (EnqueuedAt(payload))
            {
                case { } enqueuedAt when window.Contains(enqueuedAt):
                    latencies.Add(now - enqueuedAt);
                    break;
                case null:
                    errors.Record($"a task's payload carries no enqueue time: {payload}");
                    break;
            }
        }

        workers = await RowSupport.CreateWorkersAsync(context, spec.Path, taskType, spec.Workers, 1, spec.Slots, ledger, window, OnStart, ct);
        await using (workers)
        {
            workers.Start(rowTimeout.Token);
            // Let every worker reach its wait (a long poll, an open stream) before the first task.
            await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
            var producer = new PacedProducer(context.Connection, taskType, spec.PerSecond, window, errors);
            var pauses = await GcPauses.StartAsync(context.Target.Url, ct);
            var producing = producer.RunAsync(rowTimeout.Token);
            await window.RunAsync(profile.RowWarmUp, profile.LatencyWindow, CancellationToken.None, null, rowTimeout.Token);
            var paused = await pauses.DescribeAsync(ct);
            var enqueued = await producer.StopAsync(producing);
            ct.ThrowIfCancellationRequested();

            // Every task enqueued is taken and completed by now or soon: wait for it, then stop the idle workers.
            var deadline = Stopwatch.StartNew();
            var counts = await context.StoredCountsAsync(taskType, ct);
            while (counts.GetValueOrDefault(TaskStatus.Completed) < enqueued && deadline.Elapsed < TimeSpan.FromSeconds(60))
            {
                await Task.Delay(50, ct);
                counts = await context.StoredCountsAsync(taskType, ct);
            }

            var storedCompleted = counts.GetValueOrDefault(TaskStatus.Completed);
            await RowSupport.WaitForCountAsync(() => workers.Completed, storedCompleted, ct);
            await workers.StopAsync();
            if ((workers as DispatchPool)?.Unimplemented is { } unimplemented)
            {
                return QueueRow.Unavailable(spec.Id, Kind, name, context.Pass, spec.Workers, 1,
                    $"the queue service does not implement QueueService.Dispatch (UNIMPLEMENTED: {unimplemented})", Targets(spec, null));
            }

            var accounts = workers.CheckAccounts();
            var allErrors = errors.Count + workers.Errors.Count;
            var verified = accounts.Ok && storedCompleted == enqueued && storedCompleted == workers.Completed &&
                           counts.All(c => c.Key == TaskStatus.Completed || c.Value == 0) && allErrors == 0;
            var check = verified
                ? $"ok: {enqueued:N0} enqueued, completed once each"
                : $"MISMATCH: {enqueued:N0} enqueued; {accounts.Text}; stored {ScenarioContext.Describe(counts)}; {allErrors} failed calls";
            var startLatency = latencies.Summarize();
            var calls = new Dictionary<string, LatencySummary>(workers.Calls());
            if (producer.Timings.Summarize() is { } enqueueCalls)
            {
                calls[EnqueueCall] = enqueueCalls;
            }

            var during = await RowSupport.FinishAsync(context, taskType, atStart, remove: true, ct);
            return new QueueRow(
                spec.Id, Kind, name, context.Pass, spec.Workers, 1, null, window.Count, window.Seconds, window.PerSecond, calls, startLatency,
                TaskCpu.Of(window.Cpu, window.Count), atStart, during, window.Timeline, Targets(spec, startLatency), allErrors,
                [.. errors.Distinct.Concat(workers.Errors.Distinct)], verified, check, context.Target.ReadMemory(),
                note is null ? paused : $"{note}; {paused}");
        }
    }

    private static string Describe(StartLatencyRowSpec spec) => spec.Path switch
    {
        TaskPath.Dispatch => $"{spec.Workers} idle workers on dispatch streams",
        TaskPath.WorkerLibrary => $"an idle .NET worker library worker ({spec.Slots} slots, via gateway)",
        _ => $"{spec.Workers} idle workers long-polling LeaseTasks(start)",
    };

    private static IReadOnlyList<TargetCheck> Targets(StartLatencyRowSpec spec, LatencySummary? latency) =>
        spec.HasTarget
            ?
            [
                TargetCheck.Below("start p50", QueueTargets.StartP50Ms, latency?.P50Ms, " ms"),
                TargetCheck.Below("start p99", QueueTargets.StartP99Ms, latency?.P99Ms, " ms"),
            ]
            : [];

    private static long? EnqueuedAt(string payload)
    {
        try
        {
            using var document = JsonDocument.Parse(payload);
            return document.RootElement.TryGetProperty(PacedProducer.EnqueuedAtField, out var value) && value.TryGetInt64(out var ticks) ? ticks : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Enqueues one task per EnqueueTask at a fixed rate, on a schedule, each stamped with the moment its call was made.</summary>
    private sealed class PacedProducer(QueueConnection connection, string taskType, double perSecond, MeasurementWindow window, CallErrors errors)
    {
        public const string EnqueuedAtField = "enqueued_at";
        private readonly List<Task> _calls = [];
        private readonly CancellationTokenSource _stop = new();
        private int _created;

        public LatencyRecorder Timings { get; } = new(100_000);

        public Task RunAsync(CancellationToken ct) => Task.Run(async () =>
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
            var clock = Stopwatch.StartNew();
            try
            {
                for (var n = 0; !both.IsCancellationRequested; n++)
                {
                    var due = TimeSpan.FromSeconds(n / perSecond) - clock.Elapsed;
                    if (due > TimeSpan.Zero)
                    {
                        await Task.Delay(due, both.Token);
                    }

                    _calls.Add(EnqueueAsync(n, ct));
                }
            }
            catch (OperationCanceledException)
            {
                // Stopped: no more tasks.
            }
        }, CancellationToken.None);

        /// <summary>Stops the schedule, waits for the calls in flight; returns the tasks created.</summary>
        public async Task<int> StopAsync(Task running)
        {
            await _stop.CancelAsync();
            await running;
            await Task.WhenAll(_calls);
            return Volatile.Read(ref _created);
        }

        private async Task EnqueueAsync(int n, CancellationToken ct)
        {
            var started = Stopwatch.GetTimestamp();
            var request = new EnqueueTaskRequest
            {
                Task = new TaskSpec
                {
                    Type = taskType,
                    Payload = string.Create(CultureInfo.InvariantCulture, $$"""{"{{EnqueuedAtField}}":{{started}},"n":{{n}}}"""),
                },
            };
            try
            {
                var response = await connection.Queue.EnqueueTaskAsync(request, QueueConnection.Call(ct));
                if (window.Contains(started))
                {
                    Timings.Record(started);
                }

                if (response.Created)
                {
                    Interlocked.Increment(ref _created);
                }
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record(EnqueueCall, ex);
            }
        }
    }
}

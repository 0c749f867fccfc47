using System.Globalization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Dispatch;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>
/// A processing row: a backlog of the row's own task type is enqueued first (untimed, EnqueueTasks of 1,000; sized for
/// the row's rate, see <see cref="QueueProfile.BacklogFor"/>), the statistics keeper is given time to analyze it, then
/// the workers (long poll, dispatch stream or worker library) take tasks for the warm-up and the measured window. When
/// the window ends, what is left of the backlog is cut (deleted while still pending; a task a worker locked first stays
/// and is completed), every leased task is completed, the workers stop, and the row is checked: the workers' ledger (each
/// task taken once, completed once) against the queue's stored counts, and completed + cut = the backlog.
/// The cold row is the same on a brand-new database and service: no warm-up, its backlog inserted with SQL (so nothing
/// warms the service first), its statistics read once a second. A section's warm-up runs a row the same way for
/// <see cref="QueueProfile.SectionWarmUp"/>, without waiting for statistics; it is printed, not reported as a row.
/// </summary>
internal enum RowMode
{
    Warm,
    Cold,
    SectionWarmUp,
}

internal static class ProcessingScenario
{
    public const string Kind = "processing";
    private const int PrefillBatchSize = 1_000;
    private const int PrefillCallers = 4;
    private static readonly TimeSpan SettleTimeout = TimeSpan.FromSeconds(60);

    public static async Task<QueueRow> RunAsync(ScenarioContext context, ProcessingRowSpec spec, RowMode mode, CancellationToken ct)
    {
        var profile = context.Profile;
        var cold = mode == RowMode.Cold;
        var warmUp = mode == RowMode.Warm ? profile.RowWarmUp : TimeSpan.Zero;
        var length = mode switch { RowMode.Cold => profile.ColdWindow, RowMode.SectionWarmUp => profile.SectionWarmUp, _ => profile.Window };
        var taskType = context.TaskTypeOf(spec.Id);
        var database = context.Database;
        var name = RowSupport.Describe(spec.Path, spec.Workers, spec.BatchSize, spec.Slots);
        if (spec.Path == TaskPath.Dispatch && context.DispatchUnavailable is { } reason)
        {
            return QueueRow.Unavailable(spec.Id, Kind, name, context.Pass, spec.Workers, spec.BatchSize, reason, Targets(spec, double.NaN, null));
        }

        var backlog = profile.BacklogFor(spec.SizingRate, warmUp, length);
        await EnqueueBacklogAsync(context, taskType, backlog, useSql: cold, ct);
        var (atStart, note) = await RowSupport.StatisticsAtStartAsync(context, wait: mode == RowMode.Warm, ct);

        using var rowTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        rowTimeout.CancelAfter(profile.RowTimeout);
        using var ledger = new TaskLedger(backlog);
        IRowWorkers? workers = null;
        var window = new MeasurementWindow(() => workers?.Completed ?? 0, context.CpuSources);
        workers = await RowSupport.CreateWorkersAsync(context, spec.Path, taskType, spec.Workers, spec.BatchSize, spec.Slots, ledger, window, null, ct);
        await using (workers)
        {
            int? statisticsFromSecond = atStart?.HasStatistics == true ? 0 : null;
            Func<int, Task>? eachSecond = cold && database is not null
                ? async second =>
                {
                    if (statisticsFromSecond is null && (await database!.ReadStatisticsAsync(ct)).HasStatistics)
                    {
                        statisticsFromSecond = second;
                    }
                }
                : null;

            workers.Start(rowTimeout.Token);
            await window.RunAsync(warmUp, length, workers.Exhausted, eachSecond, rowTimeout.Token);
            ct.ThrowIfCancellationRequested();

            // Nothing more to lease: the rest of the backlog is cut (or, on a service whose database this run does not
            // have, worked off untimed), and every task already leased is completed before the workers stop.
            long cut = 0;
            var timedOut = false;
            if (database is not null)
            {
                await workers.PauseAsync();
                cut = await database.CutBacklogAsync(context.Tenant, taskType, ct);
            }
            else
            {
                timedOut = !await WaitAsync(workers.Exhausted, rowTimeout.Token);
            }

            timedOut |= !await context.WaitUntilNoneLeasedAsync(taskType, SettleTimeout, ct);
            var storedCompleted = (await context.StoredCountsAsync(taskType, ct)).GetValueOrDefault(TaskStatus.Completed);
            await RowSupport.WaitForCountAsync(() => workers.Completed, storedCompleted, ct);
            await workers.StopAsync();
            if (database is not null)
            {
                // A dispatch server may give back a task it had leased but not pushed yet when the capacity went to 0 or
                // the stream closed: once the workers are gone, that is cut too.
                timedOut |= !await context.WaitUntilNoneLeasedAsync(taskType, SettleTimeout, ct);
                cut += await database.CutBacklogAsync(context.Tenant, taskType, ct);
            }

            var counts = await context.StoredCountsAsync(taskType, ct);
            storedCompleted = counts.GetValueOrDefault(TaskStatus.Completed);
            var unavailable = (workers as DispatchPool)?.Unimplemented;
            if (unavailable is not null)
            {
                return QueueRow.Unavailable(spec.Id, Kind, name, context.Pass, spec.Workers, spec.BatchSize,
                    $"the queue service does not implement QueueService.Dispatch (UNIMPLEMENTED: {unavailable})", Targets(spec, double.NaN, null));
            }

            var accounts = workers.CheckAccounts();
            var others = counts.Where(c => c.Key != TaskStatus.Completed && c.Value > 0).ToList();
            var accounted = storedCompleted + cut == backlog;
            var verified = !timedOut && !window.ExhaustedInWarmUp && accounts.Ok && storedCompleted == workers.Completed && others.Count == 0 &&
                           accounted && workers.Errors.Count == 0;
            var check = verified
                ? $"ok: {storedCompleted:N0} completed once each{(cut > 0 ? $", {cut:N0} left pending were cut" : "")}"
                : $"{(timedOut ? "TIMEOUT; " : "")}{(window.ExhaustedInWarmUp ? "BACKLOG RAN OUT IN THE WARM-UP; " : "")}MISMATCH: {accounts.Text}; " +
                  $"stored {ScenarioContext.Describe(counts)}; {cut:N0} cut; backlog {backlog:N0}{(workers.Errors.Count > 0 ? $"; {workers.Errors.Count} failed calls" : "")}";

            if (window.EndedEarly)
            {
                note = Join(note, string.Create(CultureInfo.InvariantCulture,
                    $"the backlog of {backlog:N0} ran out {window.Seconds:0.0} s into the window: the figures cover those seconds (raise --scale)"));
            }

            if (cold)
            {
                note = Join(note, statisticsFromSecond switch
                {
                    0 => "the table had statistics from the start",
                    { } s => $"statistics appeared in second {s} of the window",
                    null => "NO statistics during the whole window",
                });
            }

            var calls = workers.Calls();
            var during = await RowSupport.FinishAsync(context, taskType, atStart, remove: mode == RowMode.Warm, ct);
            return new QueueRow(
                spec.Id, Kind, name, context.Pass, spec.Workers, spec.BatchSize, null, window.Count, window.Seconds, window.PerSecond, calls, null,
                TaskCpu.Of(window.Cpu, window.Count), atStart, during, window.Timeline, Targets(spec, window.PerSecond, calls),
                workers.Errors.Count, workers.Errors.Distinct, verified, check, context.Target.ReadMemory(), note);
        }
    }

    /// <summary>The row's backlog: EnqueueTasks of 1,000 from 4 callers, or (the cold row, when the database is this run's) one SQL insert.</summary>
    private static async Task EnqueueBacklogAsync(ScenarioContext context, string taskType, int count, bool useSql, CancellationToken ct)
    {
        if (useSql && context.Database is { } database)
        {
            await database.InsertPendingAsync(context.Tenant, taskType, count, priority: 0, chunk: count, progress: null, ct);
            return;
        }

        var errors = new CallErrors();
        var prefill = new TaskProducer(context.Connection, taskType, count, PrefillBatchSize, errors);
        await prefill.RunAsync(PrefillCallers, ct);
        if (prefill.Created != count)
        {
            throw new InvalidOperationException($"Enqueuing {count} tasks for {taskType} created {prefill.Created}: {string.Join("; ", errors.Distinct)}");
        }
    }

    private static IReadOnlyList<TargetCheck> Targets(ProcessingRowSpec spec, double perSecond, IReadOnlyDictionary<string, LatencySummary>? calls)
    {
        var targets = new List<TargetCheck>();
        if (spec.TargetRate is { } rate)
        {
            targets.Add(TargetCheck.AtLeast("tasks/s", rate, perSecond, ""));
        }

        if (spec.LeaseP99TargetMs is { } leaseP99)
        {
            targets.Add(TargetCheck.Below("LeaseTasks p99", leaseP99, calls?.GetValueOrDefault(QueueWorker.LeaseCall)?.P99Ms, " ms"));
        }

        return targets;
    }

    private static async Task<bool> WaitAsync(CancellationToken until, CancellationToken timeout)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(until, timeout);
        try
        {
            await Task.Delay(Timeout.Infinite, either.Token);
        }
        catch (OperationCanceledException)
        {
        }

        return until.IsCancellationRequested;
    }

    private static string Join(string? first, string second) => first is null ? second : $"{first}; {second}";

    /// <summary>Completes every task of <paramref name="taskType"/> without starting it (clean-up on a service whose database this run does not have); untimed.</summary>
    public static async Task<(bool Ok, string Text)> DrainAsync(ScenarioContext context, string taskType, long count, CancellationToken ct)
    {
        using var ledger = new TaskLedger(count);
        await using var pool = new WorkerPool(context.Connection, taskType, workers: 2, TaskPath.LeaseAndStart, batchSize: 500, ledger, window: null);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(context.Profile.RowTimeout);
        await pool.RunToExhaustionAsync(timeout.Token);
        var stored = await context.CheckStoredCountsAsync(taskType, TaskStatus.Completed, count, ct);
        var ok = ledger.CompletedCount == count && ledger.Balanced && stored.Ok && pool.Errors.Count == 0;
        return (ok, ok ? "drained once each" : $"DRAIN MISMATCH: {ledger}; {stored.Text}; {pool.Errors.Count} errors");
    }
}

using System.Globalization;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Dispatch;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.FullCycle;
using Lifeline.Benchmarks.Scenarios.Latency;
using Lifeline.Benchmarks.Scenarios.Processing;

namespace Lifeline.Benchmarks;

/// <summary>
/// The queue section of a run. On the main queue service (started here on a brand-new database, or reached at a URL):
/// the cold row first, before anything else touched the service; a warm-up; then the warm rows — processing by long poll
/// and on the dispatch stream, enqueue, enqueue → handler start latency — and, with a pending backlog, the same rows
/// again. Then the worker-library rows on services of their own (<see cref="WorkerLibraryBenchmark"/>).
/// </summary>
internal static class QueueBenchmark
{
    public const string WarmPass = "warm";
    public const string ColdPass = "cold";
    public const string WarmUpPass = "warm-up";

    public static async Task<QueueSection> RunAsync(
        BenchmarkOptions options, QueueProfile profile, LocalInfrastructure? infrastructure, string tenant, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Queue (load average {load})");
        var rows = new List<QueueRow>();
        var warmUps = new List<QueueRow>();
        var backlogs = new List<PendingBacklogInfo>();
        var memory = new List<MemoryPhase>();
        var problems = new List<string>();
        var problemCount = 0;
        TargetInfo? target = null;
        string? dispatchUnavailable = null;
        if (profile.AnyDirectRows)
        {
            (target, dispatchUnavailable, problemCount) =
                await RunDirectAsync(options, profile, infrastructure, tenant, rows, warmUps, backlogs, memory, problems, ct);
        }

        TargetInfo? libraryQueue = null, libraryRegistry = null;
        if (profile.AnyLibraryRows)
        {
            var library = await WorkerLibraryBenchmark.RunAsync(profile, infrastructure!, tenant, rows, warmUps, backlogs, ct);
            (libraryQueue, libraryRegistry) = (library.Queue, library.Registry);
            problemCount += library.Problems.Count;
            problems.AddRange(library.Problems);
        }

        return new QueueSection(target, libraryQueue, libraryRegistry, load, dispatchUnavailable, rows, warmUps, backlogs, Compare(rows), memory,
            problemCount, [.. problems.Take(20)]);
    }

    private static async Task<(TargetInfo Target, string? DispatchUnavailable, int ProblemCount)> RunDirectAsync(
        BenchmarkOptions options, QueueProfile profile, LocalInfrastructure? infrastructure, string tenant, List<QueueRow> rows, List<QueueRow> warmUps,
        List<PendingBacklogInfo> backlogs, List<MemoryPhase> memory, List<string> problems, CancellationToken ct)
    {
        await using var target = options.QueueUrl is { } url
            ? ServiceTarget.Existing(ServiceDefinition.Queue, url, options.QueuePid)
            : await ServiceTarget.StartLocalAsync(ServiceDefinition.Queue, infrastructure!, ct);
        Console.WriteLine($"Target: {target.Description}");
        using var connection = QueueConnection.Open(target.Url, tenant);
        var database = target.DatabaseConnectionString is { } database1 ? new QueueDatabase(database1) : null;
        var context = new ScenarioContext(connection, target, profile, ColdPass, database, target.CpuSources);
        void RecordMemory(string phase, ServiceMemory? reading)
        {
            if (reading is not null)
            {
                memory.Add(new MemoryPhase(phase, reading));
            }
        }

        await context.EnsureReachableAsync(ct);
        RecordMemory("idle after start", target.ReadMemory());
        Console.WriteLine($"  host       speed probed (the rows' \"host after\" is against this): {HostSpeed.Probe().Absolute}");
        async Task Run(Task<QueueRow> running)
        {
            var row = (await running) with { HostAfter = HostSpeed.Probe() };
            target.EnsureServiceRunning();
            rows.Add(row);
            RecordMemory($"after {row.Pass} {row.Id}", row.Memory);
            Print(row);
        }

        // The cold row: the first seconds of the brand-new database (no planner statistics yet) and service (no JIT yet).
        if (profile.SelectsCold)
        {
            if (database is null)
            {
                Console.WriteLine("  cold row skipped: the service at --queue-url is not brand-new (and its database is not this run's)");
            }
            else
            {
                await Run(ProcessingScenario.RunAsync(context, profile.Cold, RowMode.Cold, ct));
            }
        }

        // Warm-up: every call runs before anything warm is measured, then the main paths run for a while.
        context = context with { Pass = WarmPass };
        for (var i = 0; i < profile.WarmUp.Count; i++)
        {
            var warmUp = await FullCycleScenario.RunAsync(context, profile.WarmUp[i], $"warm-up-{i + 1}", ct);
            Console.WriteLine($"  warm-up    {warmUp.Name,-64} {warmUp.TasksPerSecond,8:0} tasks/s  {warmUp.Check}");
            if (!warmUp.Verified)
            {
                // Every row would fail the same way, each only after its timeout.
                throw new InvalidOperationException(
                    $"The warm-up did not complete its tasks, so the queue service is not working: {warmUp.Check}\n  " + string.Join("\n  ", warmUp.ErrorDetails));
            }

        }

        string? dispatchUnavailable = null;
        var dispatchSelected = profile.Processing.Any(r => r.Path == TaskPath.Dispatch && profile.Selects(r.Id)) ||
                               profile.Latency.Any(r => r.Path == TaskPath.Dispatch && profile.Selects(r.Id));
        if (dispatchSelected)
        {
            dispatchUnavailable = await DispatchProbe.UnavailableAsync(connection, ct);
            Console.WriteLine(dispatchUnavailable is null
                ? "  dispatch   QueueService.Dispatch answers: the dispatch rows run"
                : $"  dispatch   NOT AVAILABLE: {dispatchUnavailable}; the dispatch rows are reported as such");
        }

        context = context with { DispatchUnavailable = dispatchUnavailable };
        var warmUpPaths = new[] { profile.Cold }
            .Concat(dispatchSelected && dispatchUnavailable is null ? profile.Processing.Where(r => r.Path == TaskPath.Dispatch).Take(1) : []);
        foreach (var spec in warmUpPaths)
        {
            var warmUp = await ProcessingScenario.RunAsync(context with { Pass = WarmUpPass }, spec, RowMode.SectionWarmUp, ct);
            target.EnsureServiceRunning();
            warmUps.Add(warmUp);
            PrintWarmUp(warmUp);
        }

        RecordMemory("after warm-up", target.ReadMemory());
        await RunPassAsync(context, Run, ct);
        if (profile.Pending > 0)
        {
            context = context with { Pass = profile.PendingPass };
            var backlog = await PendingBacklog.InsertAsync(context, "queue", ct);
            backlogs.Add(backlog);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  pending    {backlog.Tasks:N0} tasks of type '{backlog.TaskType}' inserted in {backlog.InsertSeconds:0} s, vacuumed, analyzed and " +
                $"checkpointed in {backlog.SettleSeconds:0} s; GetQueueStats counts {backlog.StoredPending:N0} pending"));
            RecordMemory("after the pending backlog", target.ReadMemory());
            await RunPassAsync(context, Run, ct);
        }

        problems.AddRange(target.Output?.Problems() ?? []);
        return (new TargetInfo(target.Url.ToString(), target.Description), dispatchUnavailable, target.Output?.ProblemCount ?? 0);
    }

    /// <summary>The rows of one pass on the main queue service, in the order of the profile.</summary>
    private static async Task RunPassAsync(ScenarioContext context, Func<Task<QueueRow>, Task> run, CancellationToken ct)
    {
        var profile = context.Profile;
        foreach (var spec in profile.Processing.Where(r => r.Path != TaskPath.WorkerLibrary && profile.Selects(r.Id)))
        {
            await run(ProcessingScenario.RunAsync(context, spec, RowMode.Warm, ct));
        }

        foreach (var spec in profile.Enqueue.Where(r => profile.Selects(r.Id)))
        {
            await run(EnqueueScenario.RunAsync(context, spec, ct));
        }

        foreach (var spec in profile.Latency.Where(r => r.Path != TaskPath.WorkerLibrary && profile.Selects(r.Id)))
        {
            await run(StartLatencyScenario.RunAsync(context, spec, ct));
        }
    }

    /// <summary>One line per row as it finishes.</summary>
    public static void Print(QueueRow row)
    {
        var figure = row switch
        {
            { Available: false } => "not available",
            { StartLatency: { } l } => string.Create(CultureInfo.InvariantCulture, $"start p50 {l.P50Ms:0.0} ms, p99 {l.P99Ms:0.0} ms"),
            _ => string.Create(CultureInfo.InvariantCulture, $"{row.TasksPerSecond,8:N0} tasks/s"),
        };
        var cpu = row.Cpu switch
        {
            { Total: { } total } => string.Create(CultureInfo.InvariantCulture, $"  CPU {total:N0} µs/task"),
            { } c => string.Create(CultureInfo.InvariantCulture, $"  CPU (client only) {c.Client:N0} µs/task"),
            null => "",
        };
        var targets = row.Targets.Count == 0 ? "" : "  " + string.Join(", ", row.Targets.Select(t => $"{t.Goal}: {t.Verdict}"));
        var errors = row.Errors == 0 ? "" : $"; {row.Errors} failed calls";
        Console.WriteLine($"  {row.Pass,-10} {row.Id,-24} {figure}{cpu}{targets}  {row.Check}{errors}");
    }

    /// <summary>A section warm-up's line: its rate, each second's tasks (has it settled?), and its check.</summary>
    public static void PrintWarmUp(QueueRow row)
    {
        if (!row.Verified)
        {
            throw new InvalidOperationException($"The warm-up {row.Id} did not account for its tasks, so the service is not working: {row.Check}\n  " +
                                                string.Join("\n  ", row.ErrorDetails));
        }

        Console.WriteLine($"  warm-up    {$"{row.Id} for {row.Seconds:0} s",-64} {row.TasksPerSecond,8:0} tasks/s  " +
                          $"per second: {string.Join(" ", row.PerSecond)}; {row.Check}");
    }

    /// <summary>Each row of the pending pass next to the same row without the backlog.</summary>
    private static IReadOnlyList<PendingComparison> Compare(IReadOnlyList<QueueRow> rows)
    {
        var comparisons = new List<PendingComparison>();
        foreach (var pending in rows.Where(r => r.Pass.StartsWith("pending", StringComparison.Ordinal) && r.Available))
        {
            if (rows.FirstOrDefault(r => r.Pass == WarmPass && r.Id == pending.Id && r.Available) is not { } warm)
            {
                continue;
            }

            var tolerance = QueueTargets.PendingTolerance;
            if (pending.StartLatency is { } pendingLatency && warm.StartLatency is { } warmLatency)
            {
                var ratio = pendingLatency.P99Ms / warmLatency.P99Ms;
                comparisons.Add(new PendingComparison(pending.Id, pending.Name, "start p99 ms", warmLatency.P99Ms, pendingLatency.P99Ms, ratio,
                    double.IsFinite(ratio) ? ratio <= 1 + tolerance : null, warm.Cpu?.Total, pending.Cpu?.Total));
            }
            else
            {
                var ratio = pending.TasksPerSecond / warm.TasksPerSecond;
                comparisons.Add(new PendingComparison(pending.Id, pending.Name, "tasks/s", warm.TasksPerSecond, pending.TasksPerSecond, ratio,
                    double.IsFinite(ratio) ? ratio >= 1 - tolerance : null, warm.Cpu?.Total, pending.Cpu?.Total));
            }
        }

        return comparisons;
    }
}

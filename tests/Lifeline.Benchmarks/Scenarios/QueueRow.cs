using System.Globalization;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios;

/// <summary>
/// CPU time per task over a row's window, in microseconds, and the readings it comes from. <see cref="Total"/> is null
/// when the service's or PostgreSQL's share is unknown (a service this run did not start): a client-only sum is no total.
/// </summary>
/// <param name="Client">This benchmark process: the simulated workers and producers (and, in the worker-library rows, the gateway and the library).</param>
/// <param name="Services">The service process(es) under test: the queue (and, in the worker-library rows, the registry).</param>
/// <param name="Postgres">The PostgreSQL cluster's whole process tree (backends, WAL writer, checkpointer, autovacuum).</param>
internal sealed record TaskCpu(double? Total, double Client, double? Services, double? Postgres, double? Redis, CpuUse Use)
{
    public static TaskCpu? Of(CpuUse? use, long tasks)
    {
        if (use is null || tasks <= 0)
        {
            return null;
        }

        var client = use.MicrosecondsPer(use.ClientCores, tasks)!.Value;
        var services = use.MicrosecondsPer(use.ServiceCores, tasks);
        var postgres = use.MicrosecondsPer(use.PostgresCores, tasks);
        var redis = use.MicrosecondsPer(use.RedisCores, tasks);
        var total = services is { } s && postgres is { } p ? client + s + p + (redis ?? 0) : (double?)null;
        return new TaskCpu(total, client, services, postgres, redis, use);
    }
}

/// <summary>One goal of a row and whether the row met it; <see cref="Met"/> is null when it could not be measured.</summary>
internal sealed record TargetCheck(string Goal, string Measured, bool? Met)
{
    public string Verdict => Met switch { true => "met", false => "NOT MET", null => "n/a" };

    public static TargetCheck AtLeast(string what, double goal, double measured, string unit) =>
        new($"{what} ≥ {Format(goal)}{unit}", $"{Format(measured)}{unit}", double.IsFinite(measured) ? measured >= goal : null);

    public static TargetCheck Below(string what, double goal, double? measured, string unit) =>
        new($"{what} < {Format(goal)}{unit}", measured is { } m ? $"{Format(m)}{unit}" : "-", measured is { } v && double.IsFinite(v) ? v < goal : null);

    private static string Format(double value) =>
        value.ToString(value >= 100 ? "N0" : value >= 10 ? "0.0" : "0.00", CultureInfo.InvariantCulture);
}

/// <summary>
/// One row of the queue section: what ran (<see cref="Id"/> pairs the same row across passes), how many tasks its
/// window counted and in how long, call latencies inside the window, CPU per task, the planner statistics of
/// <c>tasks</c> when it started, its goals, and whether every task was accounted for exactly once.
/// </summary>
/// <param name="Pass">cold (a brand-new database and service), warm, or the pending-backlog pass (e.g. "pending 1,000,000").</param>
/// <param name="NotAvailable">Why the row could not run (e.g. the service does not implement Dispatch); null when it ran.</param>
/// <param name="StartLatency">Latency rows: from just before the task's EnqueueTask call to its handler's start.</param>
/// <param name="PerSecond">Tasks counted in each whole second of the window.</param>
/// <param name="StatisticsDuring">What happened to the table's statistics during the row (analyzes, autovacuums).</param>
/// <param name="Note">Anything that qualifies the figures (the backlog ran out early, statistics were stale…).</param>
internal sealed record QueueRow(
    string Id,
    string Kind,
    string Name,
    string Pass,
    int Workers,
    int BatchSize,
    string? NotAvailable,
    long Tasks,
    double Seconds,
    double TasksPerSecond,
    IReadOnlyDictionary<string, LatencySummary> Calls,
    LatencySummary? StartLatency,
    TaskCpu? Cpu,
    TableStatistics? StatisticsAtStart,
    string? StatisticsDuring,
    IReadOnlyList<long> PerSecond,
    IReadOnlyList<TargetCheck> Targets,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check,
    ServiceMemory? Memory,
    string? Note)
{
    public bool Available => NotAvailable is null;

    /// <summary>The host's speed probed right after the row, the machine idle again (<see cref="HostSpeed"/>): cpu / memory against the run's first probe.</summary>
    public HostSpeedReading? HostAfter { get; init; }

    /// <summary>A row that could not run, with the reason; it verifies nothing and fails nothing.</summary>
    public static QueueRow Unavailable(string id, string kind, string name, string pass, int workers, int batchSize, string reason,
        IReadOnlyList<TargetCheck> targets) =>
        new(id, kind, name, pass, workers, batchSize, reason, 0, 0, double.NaN, new Dictionary<string, LatencySummary>(), null, null, null, null, [],
            targets, 0, [], Verified: true, $"not available: {reason}", null, null);
}

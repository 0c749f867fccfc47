using System.ComponentModel.DataAnnotations;

namespace Lifeline.Queue.Options;

/// <summary>Settings of the queue service (section <c>Queue</c>), validated at start.</summary>
public sealed class QueueOptions
{
    public const string Section = "Queue";

    /// <summary>Largest payload or result accepted, in bytes (UTF-8 JSON text). Default 1 MiB.</summary>
    [Range(1024, 64 * 1024 * 1024)]
    public int MaxPayloadBytes { get; set; } = 1024 * 1024;

    /// <summary>How often expired leases and overdue attempts are looked for.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan MaintenanceInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Most tasks one maintenance pass moves per kind of change (the rest wait for the next pass).</summary>
    [Range(1, 100_000)]
    public int MaintenanceBatchSize { get; set; } = 1000;

    /// <summary>How often a long-polling LeaseTasks looks again when no wake-up signal arrives (the fallback).</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:00:30")]
    public TimeSpan LeasePollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Who may lease: <see cref="WorkerEligibilityMode.Registry"/> (default) admits only workers the registry
    /// knows as registered, not draining, not offline and with a closed or half-open breaker, and hands them only
    /// task types among their capabilities; <see cref="WorkerEligibilityMode.None"/> admits any worker id.
    /// </summary>
    public WorkerEligibilityMode WorkerEligibility { get; set; } = WorkerEligibilityMode.Registry;

    /// <summary>
    /// How often the queue looks whether its tables need an ANALYZE or a VACUUM (<see cref="ServiceDefaults.Postgres.StatisticsKeeper"/>):
    /// a table is analyzed at once when it was never analyzed or halved or doubled, and once 1,000 rows or 10 % of it
    /// changed since its last ANALYZE if that is <see cref="StatisticsChurnInterval"/> old; <c>tasks</c> is vacuumed once
    /// max(5,000, 5 %) of its row versions are dead. A look is one read of <c>pg_stat_user_tables</c>. Default 1 s: under
    /// load every second brings thousands of dead entries to the head of the ready index, which every lease steps over
    /// until a VACUUM removes them; looking every 5 s let them pile up five times higher, and every lease-path row of the
    /// benchmark ran 10–25 % slower (32 dispatch streams 6,992–7,904 → 8,950–9,898 tasks/s in the same four-row run).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan StatisticsInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The least time between two analyzes of a table whose size did not halve or double (see <see cref="StatisticsInterval"/>).</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan StatisticsChurnInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How often task outcomes are reported to the registry (when its address is configured).</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan OutcomeReportInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Group commit (default on): concurrent enqueues, leases, starts, progress reports, completions and failures
    /// are each applied together, one transaction per kind, every caller still answered on its own after the commit.
    /// Off applies every call in its own transaction (for comparison).
    /// </summary>
    public bool GroupCommit { get; set; } = true;

    /// <summary>The most calls one group-commit transaction applies.</summary>
    [Range(1, 10_000)]
    public int GroupCommitMaxItems { get; set; } = 256;

    /// <summary>
    /// How many groups of one kind may be in flight at once (each holds one connection while it runs). Default 1: the
    /// calls that arrive while a group runs wait for it and leave together, so groups are larger and each task costs
    /// less — measured on 2 cores against 2: 32 workers 4,026–4,064 vs 3,259 tasks/s, 8 workers 1,875–2,040 vs 1,330
    /// (lease p99 5.4–7.0 vs 11.3 ms), a lone worker 575–650 vs 520, 32 dispatch streams 5,959–7,058 vs 4,404. More
    /// than 1 keeps one slow group (a row lock it waits for) from holding up the calls behind it.
    /// </summary>
    [Range(1, 64)]
    public int GroupCommitConcurrency { get; set; } = 1;

    /// <summary>
    /// The task life's statements run on connections that plan each prepared statement once, generically (default);
    /// off plans them like every other statement (for comparison).
    /// </summary>
    public bool GenericPlans { get; set; } = true;

    /// <summary>The policy every group commit of the queue follows.</summary>
    public ServiceDefaults.Postgres.GroupCommitPolicy GroupCommitPolicy => new(GroupCommit, GroupCommitMaxItems, GroupCommitConcurrency);

    /// <summary>How often WatchTasks streams read new events from the task history.</summary>
    /// <summary>How often the depth and oldest-ready-age gauges are refreshed by one grouped count (a scrape reads the last sample).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "00:10:00")]
    public TimeSpan DepthSampleInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>The most task types the depth gauges report (the deepest first), bounding the metrics' cardinality.</summary>
    [Range(1, 10_000)]
    public int DepthMaxTypes { get; set; } = 200;

    /// <summary>The most ready tasks of one tenant and type the depth sample reads (its cost bound; a deeper backlog reads as this many).</summary>
    [Range(1, 1_000_000)]
    public int DepthCountLimit { get; set; } = 10_000;

    [Range(typeof(TimeSpan), "00:00:00.010", "00:00:10")]
    public TimeSpan WatchPollInterval { get; set; } = TimeSpan.FromMilliseconds(200);
}

/// <summary>How LeaseTasks decides whether a worker may lease.</summary>
public enum WorkerEligibilityMode
{
    /// <summary>Check the registry's Redis mirror of the worker.</summary>
    Registry,

    /// <summary>Any worker id may lease (development, or a queue used without the registry).</summary>
    None,
}

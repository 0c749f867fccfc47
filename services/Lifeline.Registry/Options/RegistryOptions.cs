using System.ComponentModel.DataAnnotations;

namespace Lifeline.Registry.Options;

/// <summary>Settings of the registry (section <c>Registry</c>), validated at start.</summary>
public sealed class RegistryOptions
{
    public const string Section = "Registry";

    /// <summary>How often workers should heartbeat. A heartbeat lives 3 × this long in Redis.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often lapsed heartbeats are looked for (well under the interval, so a lapse is seen within one interval).</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan MonitorInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often PostgreSQL is reconciled with Redis (missed lapses and recoveries, e.g. after Redis lost data).</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan ReconcileInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the heartbeats seen are written to PostgreSQL (coalesced: one statement for all of them).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "00:10:00")]
    public TimeSpan HeartbeatFlushInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Consecutive failures that open a worker's circuit breaker.</summary>
    [Range(1, 1000)]
    public int BreakerFailureThreshold { get; set; } = 5;

    /// <summary>How long an open breaker stays open before it half-opens.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "1.00:00:00")]
    public TimeSpan BreakerOpenDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Closed breakers unchanged and workers offline for longer than this are removed.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "3650.00:00:00")]
    public TimeSpan RetentionAge { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often the retention sweep runs.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "1.00:00:00")]
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often WatchWorkers streams read new events.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:00:10")]
    public TimeSpan WatchPollInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How often the worker, breaker and heartbeat-lag gauges are refreshed (a scrape reads the last sample).</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "00:10:00")]
    public TimeSpan MetricsSampleInterval { get; set; } = TimeSpan.FromSeconds(15);

    public TimeSpan HeartbeatTtl => HeartbeatInterval * 3;
}

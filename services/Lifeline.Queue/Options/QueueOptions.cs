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

    /// <summary>How often WatchTasks streams read new events from the task history.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:00:10")]
    public TimeSpan WatchPollInterval { get; set; } = TimeSpan.FromMilliseconds(200);
}

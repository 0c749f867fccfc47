namespace Lifeline.Registry.Data;

/// <summary>A row of <c>workers</c>.</summary>
public sealed class WorkerEntity
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }
    public required string Name { get; set; }
    public required string Type { get; set; }
    public required string Status { get; set; }
    public required string[] Capabilities { get; set; }
    public required string Metadata { get; set; }
    public required string[] RunningTaskIds { get; set; }
    public double Load { get; set; }
    public DateTime? LastHeartbeatAt { get; set; }
    public long SessionEpoch { get; set; }
    public DateTime RegisteredAt { get; set; }
    public DateTime UpdatedAt { get; set; }
    public DateTime? DeregisteredAt { get; set; }
}

/// <summary>A row of <c>worker_events</c>: the log WatchWorkers streams, written with the change it records.</summary>
public sealed class WorkerEventEntity
{
    public long Id { get; set; }
    public required string TenantId { get; set; }
    public Guid WorkerId { get; set; }
    public required string WorkerName { get; set; }
    public required string EventType { get; set; }
    public long SessionEpoch { get; set; }
    public required string[] RunningTaskIds { get; set; }
    public string? Message { get; set; }
    public DateTime OccurredAt { get; set; }
}

/// <summary>A row of <c>task_outcomes</c>: one recorded run, the source statistics are rebuilt from.</summary>
public sealed class TaskOutcomeEntity
{
    public required string TenantId { get; set; }
    public required string OutcomeId { get; set; }
    public Guid WorkerId { get; set; }
    public Guid TaskId { get; set; }
    public required string TaskType { get; set; }
    public bool Success { get; set; }
    public long DurationMs { get; set; }
    public string? ErrorCode { get; set; }
    public DateTime OccurredAt { get; set; }
    public DateTime RecordedAt { get; set; }
}

/// <summary>A row of <c>worker_stats</c>: running aggregates per worker.</summary>
public sealed class WorkerStatsEntity
{
    public Guid WorkerId { get; set; }
    public required string TenantId { get; set; }
    public long Total { get; set; }
    public long Succeeded { get; set; }
    public long Failed { get; set; }
    public long TotalDurationMs { get; set; }
    public int ConsecutiveFailures { get; set; }
    public DateTime? LastOutcomeAt { get; set; }
    public DateTime UpdatedAt { get; set; }
}

/// <summary>A row of <c>circuit_breakers</c>, updated with optimistic concurrency on <c>xmin</c>.</summary>
public sealed class CircuitBreakerEntity
{
    public Guid WorkerId { get; set; }
    public required string TenantId { get; set; }
    public required string State { get; set; }
    public int ConsecutiveFailures { get; set; }
    public int FailureThreshold { get; set; }
    public DateTime? ResetAt { get; set; }
    public DateTime? OpenedAt { get; set; }
    public DateTime UpdatedAt { get; set; }
    public uint Version { get; set; }
}

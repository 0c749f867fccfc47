namespace Lifeline.Queue.Data;

// The queue's schema, described for EF Core migrations. The task paths themselves (enqueue, lease,
// outcomes, maintenance) are SQL statements in Enqueuing/, Leasing/, Administration/, Dependencies/,
// Maintenance/ and Recovery/: one statement per state change, guarded on the current state (built from
// Domain/TaskLifecycle) and the fencing token, reading rows as TaskRecord.

/// <summary>A row of <c>tasks</c>: columns named by <see cref="TaskRecord.ColumnOf"/>, checked against the table by a test.</summary>
public sealed class TaskEntity
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }
    public required string Type { get; set; }
    public required string Status { get; set; }
    public int Priority { get; set; }
    public required string Payload { get; set; }
    public string? Result { get; set; }
    public string? Error { get; set; }
    public string? AssignedWorkerId { get; set; }
    public long FencingToken { get; set; }
    public DateTime? LeaseExpiresAt { get; set; }
    public double LeaseSeconds { get; set; }
    public DateTime? DeadlineAt { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? AssignedAt { get; set; }
    public DateTime? StartedAt { get; set; }
    public DateTime? CompletedAt { get; set; }
    public DateTime? DeadLetteredAt { get; set; }
    public DateTime UpdatedAt { get; set; }
    public int RetryCount { get; set; }
    public int MaxRetries { get; set; }
    public int TimeoutSeconds { get; set; }
    public DateTime NotBefore { get; set; }
    public string? IdempotencyKey { get; set; }
    public required string Backoff { get; set; }
    public long InitialIntervalMs { get; set; }
    public long MaximumIntervalMs { get; set; }
    public double Jitter { get; set; }
    public int UnmetDependencies { get; set; }
    public bool HasDependents { get; set; }
    public int ProgressPercent { get; set; }
    public string? ProgressMessage { get; set; }
    public string? WorkflowId { get; set; }
    public Guid? ResumeCheckpointId { get; set; }
    public int RecoveryCount { get; set; }
    public long? RecoveredToken { get; set; }
    /// <summary>The W3C traceparent of the enqueue: later steps of the task link their spans to it.</summary>
    public string? TraceParent { get; set; }
}

/// <summary>A row of <c>task_dependencies</c>: <see cref="TaskId"/> waits for <see cref="DependsOnId"/>.</summary>
public sealed class TaskDependencyEntity
{
    public Guid TaskId { get; set; }
    public Guid DependsOnId { get; set; }
    public required string TenantId { get; set; }
    public required string Type { get; set; }
    public required string State { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? ResolvedAt { get; set; }
}

/// <summary>A row of <c>task_history</c>, written in the same transaction as the change it records.</summary>
public sealed class TaskHistoryEntity
{
    public long Id { get; set; }
    public required string TenantId { get; set; }
    public Guid TaskId { get; set; }
    public required string TaskType { get; set; }
    public required string EventType { get; set; }
    public string? FromStatus { get; set; }
    public required string ToStatus { get; set; }
    public string? WorkerId { get; set; }
    public long? FencingToken { get; set; }
    public string? Message { get; set; }
    public string? Details { get; set; }
    public DateTime OccurredAt { get; set; }
}

/// <summary>A row of <c>outcome_report_cursors</c>: how far a reader of the task history has got.</summary>
public sealed class ReportCursorEntity
{
    public required string Name { get; set; }
    public long Xid { get; set; }
    public long EventId { get; set; }
    public DateTime UpdatedAt { get; set; }
}

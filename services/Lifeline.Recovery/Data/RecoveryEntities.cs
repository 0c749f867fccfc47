namespace Lifeline.Recovery.Data;

/// <summary>A row of <c>watch_cursors</c>: how far an event stream (e.g. the registry's WatchWorkers) was consumed.</summary>
public sealed class WatchCursorEntity
{
    public required string TenantId { get; set; }
    public required string Source { get; set; }
    public required string Position { get; set; }
    public DateTime UpdatedAt { get; set; }
}

/// <summary>A row of <c>recovery_actions</c>: one thing recovery did (or tried) to one task.</summary>
public sealed class RecoveryActionEntity
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }
    public Guid TaskId { get; set; }
    public required string TaskType { get; set; }
    public required string WorkflowId { get; set; }
    public required string PreviousStatus { get; set; }
    public required string NewStatus { get; set; }
    public int Action { get; set; }
    public int Trigger { get; set; }
    public required string Reason { get; set; }
    public required string WorkerId { get; set; }
    public Guid? CheckpointId { get; set; }
    public long FencingToken { get; set; }
    public DateTime DetectedAt { get; set; }
    public DateTime RecoveredAt { get; set; }
    public bool Succeeded { get; set; }
    public string? Error { get; set; }
    public long LeaderToken { get; set; }
}

/// <summary>A row of <c>system_states</c>: one snapshot of the control plane (the newest is the current state).</summary>
public sealed class SystemStateEntity
{
    public Guid Id { get; set; }
    public int Status { get; set; }
    public required string Version { get; set; }
    /// <summary>JSON: {"total":…,"online":…,"busy":…,"draining":…,"offline":…}.</summary>
    public required string WorkerPool { get; set; }
    /// <summary>JSON object: TaskStatus name → count.</summary>
    public required string QueueCounts { get; set; }
    /// <summary>JSON object: metric → number.</summary>
    public required string Metrics { get; set; }
    /// <summary>JSON object: setting → value.</summary>
    public required string Configuration { get; set; }
    public required string Reason { get; set; }
    public required string Message { get; set; }
    public DateTime CreatedAt { get; set; }
}

/// <summary>A row of <c>check_runs</c>: one run of one or all consistency checks.</summary>
public sealed class CheckRunEntity
{
    public Guid Id { get; set; }
    /// <summary>The check's name, or <c>*</c> for RunAllChecks.</summary>
    public required string Scope { get; set; }
    public DateTime StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
    /// <summary>JSON: per check {name, duration_ms, error}.</summary>
    public required string Summary { get; set; }
}

/// <summary>A row of <c>consistency_issues</c>: one problem found by a run.</summary>
public sealed class ConsistencyIssueEntity
{
    public Guid Id { get; set; }
    public Guid RunId { get; set; }
    public required string CheckName { get; set; }
    public int Severity { get; set; }
    public required string TenantId { get; set; }
    public required string Subject { get; set; }
    public required string Description { get; set; }
    public bool Fixable { get; set; }
    public bool Fixed { get; set; }
    public string? FixResult { get; set; }
    /// <summary>JSON object of strings: the facts a fix is re-validated against.</summary>
    public required string Details { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? FixedAt { get; set; }
}

/// <summary>A row of <c>recovery_plans</c>. Actions are a JSON array (PlanAction as proto JSON); <c>xmin</c> guards concurrent execution.</summary>
public sealed class RecoveryPlanEntity
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }
    public required string ErrorCode { get; set; }
    public int Category { get; set; }
    public int Severity { get; set; }
    public required string ErrorMessage { get; set; }
    public Guid? TaskId { get; set; }
    public required string WorkflowId { get; set; }
    public int Status { get; set; }
    public bool RequiresApproval { get; set; }
    public string? ApprovedBy { get; set; }
    public DateTime? ApprovedAt { get; set; }
    public required string Source { get; set; }
    public required string Actions { get; set; }
    public required string[] NextSteps { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }
    public uint Version { get; set; }
}

/// <summary>A row of <c>dr_plans</c>. Steps are a JSON array (DrStep as proto JSON).</summary>
public sealed class DrPlanEntity
{
    public Guid Id { get; set; }
    public required string Name { get; set; }
    public required string Description { get; set; }
    public required string Steps { get; set; }
    public DateTime CreatedAt { get; set; }
}

/// <summary>
/// A row of <c>dr_runs</c>. A unique partial index admits one <c>running</c> run at a time across
/// all instances. Step results are a JSON array (DrStepResult as proto JSON).
/// </summary>
public sealed class DrRunEntity
{
    public Guid Id { get; set; }
    public Guid PlanId { get; set; }
    public int Status { get; set; }
    public required string Steps { get; set; }
    public required string StartedBy { get; set; }
    public DateTime StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
    public bool CancelRequested { get; set; }
    /// <summary>The instance executing it (a run whose instance died is failed at the next start).</summary>
    public required string Instance { get; set; }
}

/// <summary>A row of <c>notifications</c>: the webhook outbox.</summary>
public sealed class NotificationEntity
{
    public Guid Id { get; set; }
    public required string Webhook { get; set; }
    public required string Event { get; set; }
    public required string Payload { get; set; }
    public int Status { get; set; }
    public int Attempts { get; set; }
    public string? LastError { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime NextAttemptAt { get; set; }
    public DateTime? DeliveredAt { get; set; }
}

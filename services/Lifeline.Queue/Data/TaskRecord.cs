using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;

namespace Lifeline.Queue.Data;

/// <summary>The stored error of a task (<c>tasks.error</c>, jsonb).</summary>
public sealed record StoredError(
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("retryable")] bool Retryable,
    [property: JsonPropertyName("severity")] string Severity,
    [property: JsonPropertyName("details")] Dictionary<string, string>? Details = null)
{
    public string ToJson() => JsonSerializer.Serialize(this);

    public static StoredError? FromJson(string? json) => json is null ? null : JsonSerializer.Deserialize<StoredError>(json);
}

/// <summary>One task as read from <c>tasks</c>.</summary>
public sealed record TaskRecord(
    Guid Id, string TenantId, string Type, string Status, int Priority, string Payload, string? Result, StoredError? Error,
    string? AssignedWorkerId, long FencingToken, DateTime? LeaseExpiresAt, DateTime CreatedAt, DateTime? AssignedAt,
    DateTime? StartedAt, DateTime? CompletedAt, DateTime? DeadLetteredAt, DateTime UpdatedAt, int RetryCount, int MaxRetries,
    int TimeoutSeconds, DateTime NotBefore, string? IdempotencyKey, string Backoff, long InitialIntervalMs,
    long MaximumIntervalMs, double Jitter, int UnmetDependencies, bool HasDependents, int ProgressPercent, string? ProgressMessage,
    string? WorkflowId, Guid? ResumeCheckpointId, int RecoveryCount, long? RecoveredToken, string? TraceParent)
{
    private static readonly string[] ColumnNames =
    [
        "id", "tenant_id", "type", "status", "priority", "payload", "result", "error", "assigned_worker_id", "fencing_token",
        "lease_expires_at", "created_at", "assigned_at", "started_at", "completed_at", "dead_lettered_at", "updated_at",
        "retry_count", "max_retries", "timeout_seconds", "not_before", "idempotency_key", "backoff", "initial_interval_ms",
        "maximum_interval_ms", "jitter", "unmet_dependencies", "has_dependents", "progress_percent", "progress_message",
        "workflow_id", "resume_checkpoint_id", "recovery_count", "recovered_token", "trace_parent",
    ];

    /// <summary>The column list <see cref="Read"/> expects, unqualified.</summary>
    public static readonly string Columns = string.Join(", ", ColumnNames);

    /// <summary>The column list qualified with a table alias (for UPDATE … FROM … RETURNING).</summary>
    public static string ColumnsOf(string alias) => string.Join(", ", ColumnNames.Select(c => alias + "." + c));

    public static TaskRecord Read(NpgsqlDataReader r) => new(
        r.GetGuid(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt32(4), r.GetString(5),
        r.IsDBNull(6) ? null : r.GetString(6), r.IsDBNull(7) ? null : StoredError.FromJson(r.GetString(7)),
        r.IsDBNull(8) ? null : r.GetString(8), r.GetInt64(9), NullableTime(r, 10), r.GetDateTime(11), NullableTime(r, 12),
        NullableTime(r, 13), NullableTime(r, 14), NullableTime(r, 15), r.GetDateTime(16), r.GetInt32(17), r.GetInt32(18),
        r.GetInt32(19), r.GetDateTime(20), r.IsDBNull(21) ? null : r.GetString(21), r.GetString(22), r.GetInt64(23),
        r.GetInt64(24), r.GetDouble(25), r.GetInt32(26), r.GetBoolean(27), r.GetInt32(28), r.IsDBNull(29) ? null : r.GetString(29),
        r.IsDBNull(30) ? null : r.GetString(30), r.IsDBNull(31) ? null : r.GetGuid(31), r.GetInt32(32), r.IsDBNull(33) ? null : r.GetInt64(33),
        r.IsDBNull(34) ? null : r.GetString(34));

    /// <summary>How many columns <see cref="Read"/> consumes; a query may select more after them.</summary>
    public static int ColumnCount => ColumnNames.Length;

    private static DateTime? NullableTime(NpgsqlDataReader r, int i) => r.IsDBNull(i) ? null : r.GetDateTime(i);

    public bool IsLeased => Status is Domain.TaskState.Assigned or Domain.TaskState.Running;
}

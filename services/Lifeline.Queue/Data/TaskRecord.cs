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

/// <summary>
/// One task as read from <c>tasks</c>. The record's parameters are the row's columns, declared once: their names give
/// the column list (<see cref="ColumnOf"/>: <c>TenantId</c> is <c>tenant_id</c>), their order is the order of
/// <see cref="Columns"/> and of <see cref="Read"/>, which names no position. <see cref="TaskEntity"/> (the EF Core model,
/// for migrations) follows the same naming rule; a test checks the record, the EF model and the migrated table agree.
/// </summary>
public sealed record TaskRecord(
    Guid Id, string TenantId, string Type, string Status, int Priority, string Payload, string? Result, StoredError? Error,
    string? AssignedWorkerId, long FencingToken, DateTime? LeaseExpiresAt, DateTime CreatedAt, DateTime? AssignedAt,
    DateTime? StartedAt, DateTime? CompletedAt, DateTime? DeadLetteredAt, DateTime UpdatedAt, int RetryCount, int MaxRetries,
    int TimeoutSeconds, DateTime NotBefore, string? IdempotencyKey, string Backoff, long InitialIntervalMs,
    long MaximumIntervalMs, double Jitter, int UnmetDependencies, bool HasDependents, int ProgressPercent, string? ProgressMessage,
    string? WorkflowId, Guid? ResumeCheckpointId, int RecoveryCount, long? RecoveredToken, string? TraceParent)
{
    /// <summary>The columns in the order of the record's parameters.</summary>
    internal static readonly string[] ColumnNames =
        typeof(TaskRecord).GetConstructors().Single().GetParameters().Select(p => ColumnOf(p.Name!)).ToArray();

    /// <summary>The column list <see cref="Read"/> expects, unqualified.</summary>
    public static readonly string Columns = string.Join(", ", ColumnNames);

    /// <summary>The column list qualified with a table alias (for UPDATE … FROM … RETURNING).</summary>
    public static string ColumnsOf(string alias) => string.Join(", ", ColumnNames.Select(c => alias + "." + c));

    /// <summary>How many columns <see cref="Read"/> consumes; a query may select more after them.</summary>
    public static int ColumnCount => ColumnNames.Length;

    /// <summary>The column of a property of the row: its name in snake case (<c>DeadLetteredAt</c> is <c>dead_lettered_at</c>).</summary>
    public static string ColumnOf(string property)
    {
        var name = new System.Text.StringBuilder(property.Length + 4);
        foreach (var c in property)
        {
            if (char.IsUpper(c) && name.Length > 0)
            {
                name.Append('_');
            }
            name.Append(char.ToLowerInvariant(c));
        }
        return name.ToString();
    }

    /// <summary>Reads the row at the reader's current position: the columns of <see cref="Columns"/>, in the order of the parameters.</summary>
    public static TaskRecord Read(NpgsqlDataReader r)
    {
        var c = new Cursor(r);
        return new(c.Uuid(), c.Text(), c.Text(), c.Text(), c.Int(), c.Text(), c.TextOrNull(), StoredError.FromJson(c.TextOrNull()),
            c.TextOrNull(), c.Long(), c.TimeOrNull(), c.Time(), c.TimeOrNull(),
            c.TimeOrNull(), c.TimeOrNull(), c.TimeOrNull(), c.Time(), c.Int(), c.Int(),
            c.Int(), c.Time(), c.TextOrNull(), c.Text(), c.Long(),
            c.Long(), c.Double(), c.Int(), c.Bool(), c.Int(), c.TextOrNull(),
            c.TextOrNull(), c.UuidOrNull(), c.Int(), c.LongOrNull(), c.TextOrNull());
    }

    /// <summary>Reads the columns of a row one after another (C# evaluates arguments left to right).</summary>
    private ref struct Cursor(NpgsqlDataReader reader)
    {
        private int next;

        public Guid Uuid() => reader.GetGuid(next++);
        public string Text() => reader.GetString(next++);
        public int Int() => reader.GetInt32(next++);
        public long Long() => reader.GetInt64(next++);
        public double Double() => reader.GetDouble(next++);
        public bool Bool() => reader.GetBoolean(next++);
        public DateTime Time() => reader.GetDateTime(next++);
        public Guid? UuidOrNull() => reader.IsDBNull(next) ? Skip<Guid?>() : reader.GetGuid(next++);
        public string? TextOrNull() => reader.IsDBNull(next) ? Skip<string?>() : reader.GetString(next++);
        public long? LongOrNull() => reader.IsDBNull(next) ? Skip<long?>() : reader.GetInt64(next++);
        public DateTime? TimeOrNull() => reader.IsDBNull(next) ? Skip<DateTime?>() : reader.GetDateTime(next++);

        private T? Skip<T>()
        {
            next++;
            return default;
        }
    }

    public bool IsLeased => Status is Domain.TaskState.Assigned or Domain.TaskState.Running;
}

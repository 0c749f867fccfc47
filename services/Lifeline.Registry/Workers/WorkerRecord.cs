using Npgsql;

namespace Lifeline.Registry.Workers;

/// <summary>One worker as stored in <c>workers</c>.</summary>
public sealed record WorkerRecord(
    Guid Id, string TenantId, string Name, string Type, string Status, string[] Capabilities, string Metadata,
    string[] RunningTaskIds, double Load, DateTime? LastHeartbeatAt, long SessionEpoch, DateTime RegisteredAt,
    DateTime UpdatedAt, DateTime? DeregisteredAt)
{
    public const string Columns =
        "id, tenant_id, name, type, status, capabilities, metadata::text, running_task_ids, load, last_heartbeat_at, session_epoch, registered_at, updated_at, deregistered_at";

    /// <summary>Number of columns <see cref="Read"/> consumes; a query may append its own after them.</summary>
    public static readonly int ColumnCount = Columns.Split(", ").Length;

    public static string ColumnsOf(string alias) =>
        string.Join(", ", Columns.Split(", ").Select(c => c == "metadata::text" ? $"{alias}.metadata::text" : $"{alias}.{c}"));

    public static WorkerRecord Read(NpgsqlDataReader r) => new(
        r.GetGuid(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetFieldValue<string[]>(5), r.GetString(6),
        r.GetFieldValue<string[]>(7), r.GetDouble(8), r.IsDBNull(9) ? null : r.GetDateTime(9), r.GetInt64(10), r.GetDateTime(11),
        r.GetDateTime(12), r.IsDBNull(13) ? null : r.GetDateTime(13));
}

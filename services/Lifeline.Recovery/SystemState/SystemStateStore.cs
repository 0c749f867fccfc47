using Lifeline.Recovery.Data;
using Lifeline.ServiceDefaults.Leadership;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Recovery.SystemState;

/// <summary>
/// The <c>system_states</c> table: snapshots are written under the leader's fencing token (a deposed leader
/// writes nothing) and kept bounded (the newest <see cref="KeepNewest"/>, none older than <see cref="KeepFor"/>).
/// </summary>
public sealed class SystemStateStore(NpgsqlDataSource dataSource)
{
    public const int KeepNewest = 10_000;
    public static readonly TimeSpan KeepFor = TimeSpan.FromDays(30);

    private const string Columns = "id, status, version, worker_pool::text, queue_counts::text, metrics::text, configuration::text, reason, message, created_at";

    public async Task<SystemStateEntity?> LatestAsync(CancellationToken ct)
    {
        var page = await HistoryAsync(1, null, ct);
        return page.Count == 0 ? null : page[0];
    }

    /// <summary>Snapshots newest first, strictly before the (created_at, id) cursor when given.</summary>
    public async Task<IReadOnlyList<SystemStateEntity>> HistoryAsync(int limit, (DateTime CreatedAt, Guid Id)? before, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"""
            SELECT {Columns} FROM system_states
            WHERE @before::timestamptz IS NULL OR (created_at, id) < (@before, @before_id)
            ORDER BY created_at DESC, id DESC LIMIT @limit
            """);
        command.Parameters.Add(new NpgsqlParameter("before", NpgsqlDbType.TimestampTz) { Value = before is { } b ? b.CreatedAt : DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("before_id", NpgsqlDbType.Uuid) { Value = before is { } c ? c.Id : Guid.Empty });
        command.Parameters.AddWithValue("limit", limit);
        var rows = new List<SystemStateEntity>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            rows.Add(new SystemStateEntity
            {
                Id = reader.GetGuid(0),
                Status = reader.GetInt32(1),
                Version = reader.GetString(2),
                WorkerPool = reader.GetString(3),
                QueueCounts = reader.GetString(4),
                Metrics = reader.GetString(5),
                Configuration = reader.GetString(6),
                Reason = reader.GetString(7),
                Message = reader.GetString(8),
                CreatedAt = reader.GetDateTime(9),
            });
        }
        return rows;
    }

    /// <summary>
    /// Writes a snapshot. With a leader's term, only while that term runs (<see cref="LeaderTerm.Fence"/>); returns
    /// null when it does not (this instance no longer leads).
    /// </summary>
    public async Task<SystemStateEntity?> InsertAsync(StateContent content, string reason, string message, LeaderTerm? term, CancellationToken ct)
    {
        var row = new SystemStateEntity
        {
            Id = Guid.CreateVersion7(),
            Status = (int)content.Status,
            Version = content.Version,
            WorkerPool = SystemStateFormat.PoolJson(content.Pool),
            QueueCounts = SystemStateFormat.Json(content.QueueCounts),
            Metrics = SystemStateFormat.Json(content.Metrics),
            Configuration = SystemStateFormat.Json(content.Configuration),
            Reason = reason,
            Message = message,
        };
        await using var command = dataSource.CreateCommand($"""
            INSERT INTO system_states (id, status, version, worker_pool, queue_counts, metrics, configuration, reason, message, created_at)
            SELECT @id, @status, @version, @pool::jsonb, @counts::jsonb, @metrics::jsonb, @configuration::jsonb, @reason, @message, clock_timestamp()
            WHERE {(term is null ? "true" : LeaderTerm.Fence)}
            RETURNING created_at
            """);
        command.Parameters.AddWithValue("id", row.Id);
        command.Parameters.AddWithValue("status", row.Status);
        command.Parameters.AddWithValue("version", row.Version);
        command.Parameters.AddWithValue("pool", row.WorkerPool);
        command.Parameters.AddWithValue("counts", row.QueueCounts);
        command.Parameters.AddWithValue("metrics", row.Metrics);
        command.Parameters.AddWithValue("configuration", row.Configuration);
        command.Parameters.AddWithValue("reason", reason);
        command.Parameters.AddWithValue("message", message);
        term?.AddFenceParameters(command.Parameters);
        if (await command.ExecuteScalarAsync(ct) is not DateTime created)
        {
            return null;
        }
        row.CreatedAt = created;
        return row;
    }

    /// <summary>Removes snapshots beyond the newest <see cref="KeepNewest"/> or older than <see cref="KeepFor"/>; returns how many.</summary>
    public async Task<int> PruneAsync(CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("""
            DELETE FROM system_states
            WHERE created_at < now() - make_interval(secs => @keep_seconds)
               OR id IN (SELECT id FROM system_states ORDER BY created_at DESC, id DESC OFFSET @keep)
            """);
        command.Parameters.AddWithValue("keep_seconds", KeepFor.TotalSeconds);
        command.Parameters.AddWithValue("keep", KeepNewest);
        return await command.ExecuteNonQueryAsync(ct);
    }
}

using System.Runtime.CompilerServices;
using Lifeline.Queue.Options;
using Lifeline.Queue.Reading;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Queue.Events;

/// <summary>Position in the event log: (writing transaction id, event id).</summary>
public readonly record struct EventPosition(ulong Xid, long Id)
{
    public override string ToString() => $"{Xid}-{Id}";

    public static bool TryParse(string value, out EventPosition position)
    {
        position = default;
        var dash = value.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !ulong.TryParse(value.AsSpan(0, dash), out var xid) || !long.TryParse(value.AsSpan(dash + 1), out var id) || id < 0)
        {
            return false;
        }
        position = new EventPosition(xid, id);
        return true;
    }
}

/// <summary>A validated WatchTasks filter.</summary>
public sealed record WatchFilter(string[] TaskTypes, Guid? TaskId, string[] EventTypes, EventPosition? After);

/// <summary>
/// Streams task history in commit order. Events are read only from transactions older than every
/// transaction still running (<c>pg_snapshot_xmin</c>), ordered by (transaction id, event id): an
/// event that commits late can therefore never be skipped, and a reader can resume from any position.
/// </summary>
public sealed class TaskEventFeed(NpgsqlDataSource dataSource, IOptions<QueueOptions> options)
{
    private const string ReadSql = $"""
        SELECT {TaskEventRecord.Columns} FROM task_history
        WHERE (xid, id) > (@xid::text::xid8, @id)
          AND xid < pg_snapshot_xmin(pg_current_snapshot())
          AND tenant_id = @tenant
          AND (cardinality(@types::text[]) = 0 OR task_type = ANY(@types))
          AND (@task::uuid IS NULL OR task_id = @task)
          AND (cardinality(@events::text[]) = 0 OR event_type = ANY(@events))
        ORDER BY xid, id
        LIMIT 500
        """;

    public async IAsyncEnumerable<TaskEventRecord> WatchAsync(string tenant, WatchFilter filter, [EnumeratorCancellation] CancellationToken ct)
    {
        var position = filter.After ?? await CurrentPositionAsync(ct);
        while (!ct.IsCancellationRequested)
        {
            // Every event of a transaction older than this horizon is visible to the read below.
            var horizon = await CurrentPositionAsync(ct);
            var batch = new List<TaskEventRecord>();
            await using (var command = dataSource.CreateCommand(ReadSql))
            {
                command.Parameters.AddWithValue("xid", position.Xid.ToString(System.Globalization.CultureInfo.InvariantCulture));
                command.Parameters.AddWithValue("id", position.Id);
                command.Parameters.AddWithValue("tenant", tenant);
                command.Parameters.AddWithValue("types", filter.TaskTypes);
                command.Parameters.Add(new NpgsqlParameter("task", NpgsqlTypes.NpgsqlDbType.Uuid) { Value = filter.TaskId is { } t ? t : DBNull.Value });
                command.Parameters.AddWithValue("events", filter.EventTypes);
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    batch.Add(TaskEventRecord.Read(reader));
                }
            }
            foreach (var e in batch)
            {
                position = new EventPosition(e.Xid, e.Id);
                yield return e;
            }
            if (batch.Count < 500)
            {
                // Nothing more before the horizon: skip past events the filter left out, so the next
                // read does not scan them again.
                if (horizon.Xid > position.Xid)
                {
                    position = horizon;
                }
                await Task.Delay(options.Value.WatchPollInterval, ct);
            }
        }
    }

    /// <summary>"From now on": everything from transactions that may still commit.</summary>
    private async Task<EventPosition> CurrentPositionAsync(CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint");
        var xmin = (long)(await command.ExecuteScalarAsync(ct))!;
        return new EventPosition((ulong)xmin - 1, long.MaxValue);
    }
}

using System.Runtime.CompilerServices;
using Lifeline.Registry.Options;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Registry.Events;

/// <summary>One row of <c>worker_events</c>.</summary>
public sealed record WorkerEventRecord(LogPosition Position, Guid WorkerId, string WorkerName, string EventType, long SessionEpoch,
    string[] RunningTaskIds, string? Message, DateTime OccurredAt);

/// <summary>A validated WatchWorkers filter.</summary>
public sealed record WorkerWatchFilter(string[] EventTypes, Guid? WorkerId, LogPosition? After);

/// <summary>Streams worker events in commit order (see <see cref="CommitOrderedLog"/>).</summary>
public sealed class WorkerEventFeed(NpgsqlDataSource dataSource, IOptions<RegistryOptions> options)
{
    private const int BatchSize = 500;
    private readonly CommitOrderedLog _log = new(dataSource, "worker_events");

    private const string Columns = "xid::text::bigint, id, worker_id, worker_name, event_type, session_epoch, running_task_ids, message, occurred_at";

    private const string Filter = """
        tenant_id = @tenant
        AND (cardinality(@events::text[]) = 0 OR event_type = ANY(@events))
        AND (@worker::uuid IS NULL OR worker_id = @worker)
        """;

    public async IAsyncEnumerable<WorkerEventRecord> WatchAsync(string tenant, WorkerWatchFilter filter, [EnumeratorCancellation] CancellationToken ct)
    {
        var position = filter.After ?? await _log.HorizonAsync(ct);
        while (!ct.IsCancellationRequested)
        {
            var (events, next) = await _log.ReadAsync(position, Columns, Filter, p =>
            {
                p.AddWithValue("tenant", tenant);
                p.AddWithValue("events", filter.EventTypes);
                p.Add(new NpgsqlParameter("worker", NpgsqlDbType.Uuid) { Value = filter.WorkerId is { } w ? w : DBNull.Value });
            }, r =>
            {
                var position = new LogPosition((ulong)r.GetInt64(0), r.GetInt64(1));
                return (new WorkerEventRecord(position, r.GetGuid(2), r.GetString(3), r.GetString(4), r.GetInt64(5),
                    r.GetFieldValue<string[]>(6), r.IsDBNull(7) ? null : r.GetString(7), r.GetDateTime(8)), position);
            }, BatchSize, ct);
            position = next;
            foreach (var e in events)
            {
                yield return e;
            }
            if (events.Count < BatchSize)
            {
                await Task.Delay(options.Value.WatchPollInterval, ct);
            }
        }
    }
}

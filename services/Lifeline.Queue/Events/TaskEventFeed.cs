using System.Runtime.CompilerServices;
using Lifeline.Queue.Options;
using Lifeline.Queue.Reading;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Queue.Events;

/// <summary>A validated WatchTasks filter.</summary>
public sealed record WatchFilter(string[] TaskTypes, Guid? TaskId, string[] EventTypes, LogPosition? After);

/// <summary>Streams task history in commit order (see <see cref="CommitOrderedLog"/>), filtered per watcher.</summary>
public sealed class TaskEventFeed(NpgsqlDataSource dataSource, IOptions<QueueOptions> options)
{
    private const int BatchSize = 500;
    private readonly CommitOrderedLog _log = new(dataSource, "task_history");

    private const string Filter = """
        (@tenant::text IS NULL OR tenant_id = @tenant)
        AND (cardinality(@types::text[]) = 0 OR task_type = ANY(@types))
        AND (@task::uuid IS NULL OR task_id = @task)
        AND (cardinality(@events::text[]) = 0 OR event_type = ANY(@events))
        """;

    public async IAsyncEnumerable<TaskEventRecord> WatchAsync(string tenant, WatchFilter filter, [EnumeratorCancellation] CancellationToken ct)
    {
        var position = filter.After ?? await _log.HorizonAsync(ct);
        while (!ct.IsCancellationRequested)
        {
            var (events, next) = await ReadAsync(position, tenant, filter.TaskTypes, filter.TaskId, filter.EventTypes, ct);
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

    /// <summary>One read of the log after <paramref name="after"/> (also used by the outcome reporter).</summary>
    public Task<(IReadOnlyList<TaskEventRecord> Events, LogPosition Next)> ReadAsync(
        LogPosition after, string? tenant, string[] taskTypes, Guid? taskId, string[] eventTypes, CancellationToken ct) =>
        _log.ReadAsync(after, TaskEventRecord.Columns, Filter, p =>
        {
            p.Add(new NpgsqlParameter("tenant", NpgsqlDbType.Text) { Value = (object?)tenant ?? DBNull.Value });
            p.AddWithValue("types", taskTypes);
            p.Add(new NpgsqlParameter("task", NpgsqlDbType.Uuid) { Value = taskId is { } t ? t : DBNull.Value });
            p.AddWithValue("events", eventTypes);
        }, r =>
        {
            var e = TaskEventRecord.Read(r);
            return (e, new LogPosition(e.Xid, e.Id));
        }, BatchSize, ct);
}

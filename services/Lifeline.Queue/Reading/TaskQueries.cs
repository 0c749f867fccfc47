using Lifeline.ServiceDefaults.Paging;
using Lifeline.Queue.Data;
using Lifeline.Queue.Domain;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Tenancy;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Queue.Reading;

/// <summary>A validated ListTasks / ListDeadLetters filter.</summary>
public sealed record TaskFilter(string? Status, string? Type, string? WorkerId, int PageSize, PageCursor? After, string? WorkflowId = null);

/// <summary>Keyset position in a newest-first listing: the (time, id) of the last row of the previous page.</summary>
public sealed record PageCursor(DateTime Time, Guid Id)
{
    /// <summary>Listing names a token is bound to: a token of one listing is refused by the other.</summary>
    public const string Tasks = "queue.tasks";
    public const string DeadLetters = "queue.dead_letters";

    public string Encode(string listing) => PageTokens.Encode(listing, Time, Id);

    public static PageCursor? TryDecode(string listing, string token) =>
        PageTokens.TryDecode(listing, token, out var time, out var id) ? new PageCursor(time, id) : null;
}

/// <summary>One row of task_history.</summary>
public sealed record TaskEventRecord(
    long Id, ulong Xid, Guid TaskId, string TaskType, string EventType, string? FromStatus, string ToStatus, string? WorkerId,
    long? FencingToken, string? Message, string? Details, DateTime OccurredAt, string TenantId)
{
    public const string Columns = "id, xid::text::bigint, task_id, task_type, event_type, from_status, to_status, worker_id, fencing_token, message, details::text, occurred_at, tenant_id";

    public static TaskEventRecord Read(NpgsqlDataReader r) => new(
        r.GetInt64(0), (ulong)r.GetInt64(1), r.GetGuid(2), r.GetString(3), r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5),
        r.GetString(6), r.IsDBNull(7) ? null : r.GetString(7), r.IsDBNull(8) ? null : r.GetInt64(8),
        r.IsDBNull(9) ? null : r.GetString(9), r.IsDBNull(10) ? null : r.GetString(10), r.GetDateTime(11), r.GetString(12));
}

/// <summary>Queue statistics of one tenant.</summary>
public sealed record QueueStats(IReadOnlyList<(string Type, string Status, long Count)> Counts, TimeSpan OldestReadyAge);

/// <summary>Read-only queries: a task, listings, history, statistics.</summary>
public sealed class TaskQueries(NpgsqlDataSource dataSource)
{
    public async Task<TaskRecord> GetAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"SELECT {TaskRecord.Columns} FROM tasks WHERE id = @id AND tenant_id = @tenant");
        command.Parameters.AddWithValue("id", id);
        command.Parameters.AddWithValue("tenant", tenant);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? TaskRecord.Read(reader) : throw new NotFoundException("task", id.ToString());
    }

    /// <summary>Tasks newest first (by created_at, id), one page past the cursor.</summary>
    public async Task<(IReadOnlyList<TaskRecord> Tasks, PageCursor? Next)> ListAsync(string tenant, TaskFilter filter, CancellationToken ct) =>
        await PageAsync("created_at", "", tenant, filter, r => r.CreatedAt, ct);

    /// <summary>Dead letters, most recently dead-lettered first.</summary>
    public async Task<(IReadOnlyList<TaskRecord> Tasks, PageCursor? Next)> ListDeadLettersAsync(string tenant, TaskFilter filter, CancellationToken ct) =>
        await PageAsync("dead_lettered_at", $"status = {TaskState.Sql(TaskState.DeadLettered)}", tenant, filter with { Status = null }, r => r.DeadLetteredAt!.Value, ct);

    /// <summary>
    /// One keyset page. The statement names only the filters given (no <c>@x IS NULL OR …</c>): with prepared,
    /// generic plans such a catch-all predicate keeps PostgreSQL from walking the matching index, and every page
    /// would scan the table — a listing of 100,000 in-flight tasks became quadratic.
    /// </summary>
    private async Task<(IReadOnlyList<TaskRecord>, PageCursor?)> PageAsync(
        string orderColumn, string fixedCondition, string tenant, TaskFilter filter, Func<TaskRecord, DateTime> position, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand();
        var where = new List<string> { "tenant_id = @tenant" };
        command.Parameters.AddWithValue("tenant", tenant);
        if (fixedCondition.Length > 0)
        {
            where.Add(fixedCondition);
        }
        void Filter(string column, string name, string? value)
        {
            if (value is not null)
            {
                where.Add($"{column} = @{name}");
                command.Parameters.Add(new NpgsqlParameter(name, NpgsqlDbType.Text) { Value = value });
            }
        }
        Filter("status", "status", filter.Status);
        Filter("type", "type", filter.Type);
        Filter("assigned_worker_id", "worker", filter.WorkerId);
        Filter("workflow_id", "workflow", filter.WorkflowId);
        if (filter.After is { } after)
        {
            where.Add($"({orderColumn}, id) < (@after_time, @after_id)");
            command.Parameters.Add(new NpgsqlParameter("after_time", NpgsqlDbType.TimestampTz) { Value = after.Time });
            command.Parameters.Add(new NpgsqlParameter("after_id", NpgsqlDbType.Uuid) { Value = after.Id });
        }
        command.Parameters.AddWithValue("limit", filter.PageSize + 1);
        command.CommandText = $"SELECT {TaskRecord.Columns} FROM tasks WHERE {string.Join(" AND ", where)} ORDER BY {orderColumn} DESC, id DESC LIMIT @limit";
        var tasks = new List<TaskRecord>(filter.PageSize + 1);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            tasks.Add(TaskRecord.Read(reader));
        }
        if (tasks.Count <= filter.PageSize)
        {
            return (tasks, null);
        }
        tasks.RemoveAt(tasks.Count - 1);
        var last = tasks[^1];
        return (tasks, new PageCursor(position(last), last.Id));
    }

    /// <summary>History of one task, oldest first, after the given event id.</summary>
    public async Task<(IReadOnlyList<TaskEventRecord> Events, long? Next)> HistoryAsync(string tenant, Guid taskId, int pageSize, long afterId, CancellationToken ct)
    {
        await GetAsync(tenant, taskId, ct); // NOT_FOUND for unknown or foreign tasks
        await using var command = dataSource.CreateCommand($"""
            SELECT {TaskEventRecord.Columns} FROM task_history
            WHERE task_id = @task AND tenant_id = @tenant AND id > @after
            ORDER BY id LIMIT @limit
            """);
        command.Parameters.AddWithValue("task", taskId);
        command.Parameters.AddWithValue("tenant", tenant);
        command.Parameters.AddWithValue("after", afterId);
        command.Parameters.AddWithValue("limit", pageSize + 1);
        var events = new List<TaskEventRecord>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            events.Add(TaskEventRecord.Read(reader));
        }
        if (events.Count <= pageSize)
        {
            return (events, null);
        }
        events.RemoveAt(events.Count - 1);
        return (events, events[^1].Id);
    }

    /// <summary>Every tenant with unfinished tasks (pending, assigned or running), in byte order.</summary>
    public Task<IReadOnlyList<string>> ActiveTenantsAsync(CancellationToken ct) =>
        ActiveTenants.ListAsync(dataSource, "tasks", $"x.status IN ({TaskState.SqlList(TaskLifecycle.Cancel.From)})", ct);

    public async Task<QueueStats> StatsAsync(string tenant, string? type, CancellationToken ct)
    {
        var counts = new List<(string, string, long)>();
        await using (var command = dataSource.CreateCommand("""
            SELECT type, status, count(*) FROM tasks
            WHERE tenant_id = @tenant AND (@type::text IS NULL OR type = @type)
            GROUP BY type, status ORDER BY type, status
            """))
        {
            command.Parameters.AddWithValue("tenant", tenant);
            command.Parameters.Add(new NpgsqlParameter("type", NpgsqlDbType.Text) { Value = (object?)type ?? DBNull.Value });
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                counts.Add((reader.GetString(0), reader.GetString(1), reader.GetInt64(2)));
            }
        }
        await using var oldest = dataSource.CreateCommand($"""
            SELECT COALESCE(EXTRACT(epoch FROM now() - min(not_before)), 0)::float8 FROM tasks
            WHERE tenant_id = @tenant AND status = {TaskState.Sql(TaskState.Pending)} AND unmet_dependencies = 0 AND not_before <= now()
              AND (@type::text IS NULL OR type = @type)
            """);
        oldest.Parameters.AddWithValue("tenant", tenant);
        oldest.Parameters.Add(new NpgsqlParameter("type", NpgsqlDbType.Text) { Value = (object?)type ?? DBNull.Value });
        var seconds = (double)(await oldest.ExecuteScalarAsync(ct) ?? 0d);
        return new QueueStats(counts, TimeSpan.FromSeconds(Math.Max(0, seconds)));
    }
}

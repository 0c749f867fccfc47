using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Queue.Leasing;

/// <summary>A validated failure report.</summary>
public sealed record FailureReport(StoredError Error, TimeSpan? RetryAfter);

/// <summary>A validated completion of a batch.</summary>
public sealed record Completion(Guid TaskId, long FencingToken, string? Result);

/// <summary>The outcome of one completion of a batch: null error means accepted.</summary>
public sealed record CompletionOutcome(Guid TaskId, LifelineException? Refusal);

/// <summary>
/// What the holder of a lease may do: start, report progress, extend, complete, fail, release. Every
/// change is guarded on the task's current fencing token and state in the statement that makes it, so
/// a stale holder's call matches no row and changes nothing; the refusal then says why.
/// </summary>
public sealed class LeaseHolderOperations(NpgsqlDataSource dataSource, ReadySignal readySignal)
{
    // The "old" CTE locks the row and remembers the state before the change, for the history.
    private static string Guarded(string allowedStates, string set, string eventType, string toStatus, string message = "NULL", string details = "NULL") => $"""
        WITH old AS (
            SELECT id, status FROM tasks WHERE id = @id AND tenant_id = @tenant FOR UPDATE
        ), changed AS (
            UPDATE tasks t SET {set}, updated_at = now()
            FROM old
            WHERE t.id = old.id AND t.fencing_token = @token AND old.status IN ({allowedStates})
            RETURNING {TaskRecord.ColumnsOf("t")}, old.status AS from_status
        ), history AS (
            {History.InsertFrom("changed", eventType, "from_status", toStatus, message, details)}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    private static readonly string StartSql = Guarded("'assigned'",
        "status = 'running', started_at = now(), deadline_at = now() + make_interval(secs => t.timeout_seconds), " +
        "lease_expires_at = now() + make_interval(secs => t.lease_seconds)",
        "started", "'running'");

    private static readonly string ProgressSql = Guarded("'assigned','running'",
        "progress_percent = @percent, progress_message = @message, lease_seconds = COALESCE(@lease_seconds, t.lease_seconds), " +
        "lease_expires_at = now() + make_interval(secs => COALESCE(@lease_seconds, t.lease_seconds))",
        "progress", "status", "@message", "jsonb_build_object('percent', @percent)");

    private static readonly string ExtendSql = Guarded("'assigned','running'",
        "lease_seconds = @lease_seconds, lease_expires_at = now() + make_interval(secs => @lease_seconds)",
        "lease_extended", "status", details: "jsonb_build_object('lease_seconds', @lease_seconds)");

    private static readonly string CompleteSql = Guarded("'assigned','running'",
        "status = 'completed', result = @result::jsonb, error = NULL, completed_at = now(), lease_expires_at = NULL, progress_percent = 100",
        "completed", "'completed'", details: RunDuration);

    // How long the attempt ran (from start, or from the lease when it was never started); reported to the registry.
    private const string RunDuration = "jsonb_build_object('duration_ms', floor(extract(epoch FROM now() - COALESCE(started_at, assigned_at)) * 1000)::bigint)";

    public Task<TaskRecord> StartAsync(string tenant, Guid id, long token, CancellationToken ct) =>
        RunGuardedAsync(tenant, id, token, "start", StartSql, _ => { }, idempotentIn: TaskState.Running, ct);

    public Task<TaskRecord> ReportProgressAsync(string tenant, Guid id, long token, int percent, string? message, TimeSpan? lease, CancellationToken ct) =>
        RunGuardedAsync(tenant, id, token, "progress", ProgressSql, p =>
        {
            p.AddWithValue("percent", percent);
            p.Add(new NpgsqlParameter("message", NpgsqlDbType.Text) { Value = (object?)message ?? DBNull.Value });
            p.Add(new NpgsqlParameter("lease_seconds", NpgsqlDbType.Double) { Value = lease is { } l ? l.TotalSeconds : DBNull.Value });
        }, idempotentIn: null, ct);

    public Task<TaskRecord> ExtendLeaseAsync(string tenant, Guid id, long token, TimeSpan lease, CancellationToken ct) =>
        RunGuardedAsync(tenant, id, token, "extending the lease", ExtendSql, p => p.AddWithValue("lease_seconds", lease.TotalSeconds), idempotentIn: null, ct);

    public Task<TaskRecord> CompleteAsync(string tenant, Guid id, long token, string? result, CancellationToken ct) =>
        RunGuardedAsync(tenant, id, token, "completion", CompleteSql,
            p => p.Add(new NpgsqlParameter("result", NpgsqlDbType.Text) { Value = (object?)result ?? DBNull.Value }),
            idempotentIn: TaskState.Completed, ct);

    /// <summary>
    /// Runs a guarded change in a transaction; when the task ends and others wait for it, resolves them
    /// in the same transaction. A repeat of an already applied call by the same holder (same token, state
    /// <paramref name="idempotentIn"/>) returns the task unchanged instead of an error.
    /// </summary>
    private async Task<TaskRecord> RunGuardedAsync(string tenant, Guid id, long token, string operation, string sql,
        Action<NpgsqlParameterCollection> addParameters, string? idempotentIn, CancellationToken cancellationToken)
    {
        var (record, resolution) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            TaskRecord? changed = null;
            await using (var command = new NpgsqlCommand(sql, connection, tx))
            {
                command.Parameters.AddWithValue("id", id);
                command.Parameters.AddWithValue("tenant", tenant);
                command.Parameters.AddWithValue("token", token);
                addParameters(command.Parameters);
                await using var reader = await command.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    changed = TaskRecord.Read(reader);
                }
            }
            if (changed is null)
            {
                var current = await ReadAsync(connection, tx, tenant, id, ct);
                if (current is not null && idempotentIn is not null && current.Status == idempotentIn && current.FencingToken == token)
                {
                    return (current, (Resolution?)null);
                }
                throw Refusal(current, id, token, operation);
            }
            Resolution? resolution = null;
            if (changed.HasDependents && TaskState.IsEnded(changed.Status))
            {
                resolution = await DependencyResolver.ResolveAsync(connection, tx, [new EndedTask(changed.Id, changed.Status)], ct);
            }
            await tx.CommitAsync(ct);
            return (changed, resolution);
        }, cancellationToken);
        NotifyReady(resolution);
        return record;
    }

    // ---- batch completion ----

    private static readonly string CompleteManySql = $"""
        WITH input(id, token, result) AS (
            SELECT * FROM unnest(@ids::uuid[], @tokens::bigint[], @results::text[])
        ), old AS (
            -- "id = ANY(@ids)" (not a join with the unnest) so the planner walks the primary key, however large the table.
            SELECT t.id, t.status FROM tasks t
            WHERE t.id = ANY(@ids) AND t.tenant_id = @tenant ORDER BY t.id FOR UPDATE
        ), changed AS (
            UPDATE tasks t
            SET status = 'completed', result = i.result::jsonb, error = NULL, completed_at = now(), lease_expires_at = NULL,
                progress_percent = 100, updated_at = now()
            FROM input i JOIN old o ON o.id = i.id
            WHERE t.id = ANY(@ids) AND t.id = i.id AND t.fencing_token = i.token AND o.status IN ('assigned','running')
            RETURNING t.id, t.tenant_id, t.type, t.assigned_worker_id, t.fencing_token, t.has_dependents, t.started_at, t.assigned_at,
                      o.status AS from_status
        ), history AS (
            {History.InsertFrom("changed", "completed", "from_status", "'completed'", details: RunDuration)}
        )
        SELECT id, has_dependents FROM changed
        """;

    /// <summary>Completes many tasks in one transaction; each is accepted or refused on its own.</summary>
    public async Task<IReadOnlyList<CompletionOutcome>> CompleteManyAsync(string tenant, IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
    {
        var (outcomes, resolution) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var accepted = new HashSet<Guid>();
            var ended = new List<EndedTask>();
            await using (var command = new NpgsqlCommand(CompleteManySql, connection, tx))
            {
                command.Parameters.AddWithValue("tenant", tenant);
                command.Parameters.AddWithValue("ids", completions.Select(c => c.TaskId).ToArray());
                command.Parameters.AddWithValue("tokens", completions.Select(c => c.FencingToken).ToArray());
                command.Parameters.Add(new NpgsqlParameter("results", NpgsqlDbType.Array | NpgsqlDbType.Text)
                {
                    Value = completions.Select(c => (object?)c.Result ?? DBNull.Value).ToArray(),
                });
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    accepted.Add(reader.GetGuid(0));
                    if (reader.GetBoolean(1))
                    {
                        ended.Add(new EndedTask(reader.GetGuid(0), TaskState.Completed));
                    }
                }
            }
            var refusedIds = completions.Where(c => !accepted.Contains(c.TaskId)).Select(c => c.TaskId).ToArray();
            var current = new Dictionary<Guid, TaskRecord>();
            if (refusedIds.Length > 0)
            {
                await using var read = new NpgsqlCommand($"SELECT {TaskRecord.Columns} FROM tasks WHERE tenant_id = @tenant AND id = ANY(@ids)", connection, tx);
                read.Parameters.AddWithValue("tenant", tenant);
                read.Parameters.AddWithValue("ids", refusedIds);
                await using var reader = await read.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var record = TaskRecord.Read(reader);
                    current[record.Id] = record;
                }
            }
            Resolution? resolution = ended.Count > 0 ? await DependencyResolver.ResolveAsync(connection, tx, ended, ct) : null;
            await tx.CommitAsync(ct);
            var results = completions.Select(c =>
            {
                if (accepted.Contains(c.TaskId))
                {
                    return new CompletionOutcome(c.TaskId, null);
                }
                current.TryGetValue(c.TaskId, out var task);
                var repeat = task is not null && task.Status == TaskState.Completed && task.FencingToken == c.FencingToken;
                return new CompletionOutcome(c.TaskId, repeat ? null : Refusal(task, c.TaskId, c.FencingToken, "completion"));
            }).ToList();
            return (results, resolution);
        }, cancellationToken);
        NotifyReady(resolution);
        return outcomes;
    }

    // ---- fail and release: decided in code on the locked row ----

    private static string FailSqlFor(string eventType) => $"""
        WITH changed AS (
            UPDATE tasks t
            SET status = @status, error = @error::jsonb, retry_count = @retry_count, not_before = @not_before,
                lease_expires_at = NULL, started_at = CASE WHEN @status = 'pending' THEN NULL ELSE t.started_at END,
                deadline_at = CASE WHEN @status = 'pending' THEN NULL ELSE t.deadline_at END,
                completed_at = CASE WHEN @status = 'pending' THEN NULL ELSE now() END,
                dead_lettered_at = CASE WHEN @status = 'dead_lettered' THEN now() ELSE NULL END,
                updated_at = now()
            WHERE t.id = @id
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", eventType, "@from_status", "status", "@message", "@details::jsonb")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>
    /// Records a failed attempt: retry after backoff when retryable with retries left, dead-letter when
    /// retryable but exhausted (MAX_RETRIES_EXCEEDED), end as failed when not retryable.
    /// </summary>
    public async Task<(TaskRecord Task, bool WillRetry)> FailAsync(string tenant, Guid id, long token, FailureReport failure, CancellationToken cancellationToken)
    {
        var (record, willRetry, resolution) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var current = await ReadAsync(connection, tx, tenant, id, ct, forUpdate: true);
            if (current is null || current.FencingToken != token || !current.IsLeased)
            {
                if (current is not null && current.FencingToken == token && await FailedWithAsync(connection, tx, id, token, ct))
                {
                    // A repeat of a failure this holder already reported (its answer was lost): the same answer, nothing changes.
                    return (current, current.Status == TaskState.Pending, (Resolution?)null);
                }
                throw Refusal(current, id, token, "failing");
            }
            var error = failure.Error;
            string status, eventType;
            var retryCount = current.RetryCount;
            var notBefore = DateTime.UtcNow;
            var details = new Dictionary<string, string>
            {
                ["error_code"] = error.Code,
                ["duration_ms"] = ((long)(DateTime.UtcNow - (current.StartedAt ?? current.AssignedAt ?? DateTime.UtcNow)).TotalMilliseconds)
                    .ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            if (!error.Retryable)
            {
                status = TaskState.Failed;
                eventType = "failed";
            }
            else if (current.RetryCount < current.MaxRetries)
            {
                status = TaskState.Pending;
                eventType = "retry_scheduled";
                retryCount++;
                var schedule = new RetrySchedule(RetrySchedule.ParseStrategy(current.Backoff), TimeSpan.FromMilliseconds(current.InitialIntervalMs),
                    TimeSpan.FromMilliseconds(current.MaximumIntervalMs), current.Jitter);
                notBefore = DateTime.UtcNow + (failure.RetryAfter ?? schedule.DelayBefore(retryCount, Random.Shared.NextDouble()));
                details["retry_at"] = notBefore.ToString("O");
                details["retry"] = retryCount.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
            else
            {
                status = TaskState.DeadLettered;
                eventType = "dead_lettered";
                error = new StoredError("MAX_RETRIES_EXCEEDED",
                    $"Gave up after {current.RetryCount + 1} attempts; last error {error.Code}: {error.Message}", false, error.Severity,
                    new Dictionary<string, string>(error.Details ?? []) { ["last_error_code"] = error.Code });
            }
            TaskRecord changed;
            await using (var command = new NpgsqlCommand(FailSqlFor(eventType), connection, tx))
            {
                command.Parameters.AddWithValue("id", id);
                command.Parameters.AddWithValue("status", status);
                command.Parameters.AddWithValue("error", error.ToJson());
                command.Parameters.AddWithValue("retry_count", retryCount);
                command.Parameters.Add(new NpgsqlParameter("not_before", NpgsqlDbType.TimestampTz) { Value = notBefore });
                command.Parameters.AddWithValue("from_status", current.Status);
                command.Parameters.AddWithValue("message", failure.Error.Message);
                command.Parameters.AddWithValue("details", System.Text.Json.JsonSerializer.Serialize(details));
                await using var reader = await command.ExecuteReaderAsync(ct);
                await reader.ReadAsync(ct);
                changed = TaskRecord.Read(reader);
            }
            Resolution? resolution = null;
            if (changed.HasDependents && TaskState.IsEnded(changed.Status))
            {
                resolution = await DependencyResolver.ResolveAsync(connection, tx, [new EndedTask(changed.Id, changed.Status)], ct);
            }
            await tx.CommitAsync(ct);
            return (changed, status == TaskState.Pending, resolution);
        }, cancellationToken);
        NotifyReady(resolution);
        if (willRetry && record.NotBefore <= DateTime.UtcNow)
        {
            readySignal.Notify(tenant);
        }
        return (record, willRetry);
    }

    /// <summary>Whether the task's latest history event is a failure reported under <paramref name="token"/> (index ix_task_history_task).</summary>
    private static async Task<bool> FailedWithAsync(NpgsqlConnection connection, NpgsqlTransaction tx, Guid id, long token, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT event_type IN ('failed', 'retry_scheduled', 'dead_lettered') AND fencing_token = @token
            FROM task_history WHERE task_id = @id ORDER BY id DESC LIMIT 1
            """, connection, tx);
        command.Parameters.AddWithValue("id", id);
        command.Parameters.AddWithValue("token", token);
        return await command.ExecuteScalarAsync(ct) is true;
    }

    private static readonly string ReleaseSql = $"""
        WITH changed AS (
            UPDATE tasks t
            SET status = 'pending', lease_expires_at = NULL, started_at = NULL, deadline_at = NULL,
                not_before = now() + make_interval(secs => @delay_seconds), updated_at = now()
            WHERE t.id = @id
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "released", "@from_status", "'pending'", "@reason")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>Gives a leased task back without counting an attempt.</summary>
    public async Task<TaskRecord> ReleaseAsync(string tenant, Guid id, long token, string? reason, TimeSpan delay, CancellationToken cancellationToken)
    {
        var record = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var current = await ReadAsync(connection, tx, tenant, id, ct, forUpdate: true);
            if (current is null || current.FencingToken != token || !current.IsLeased)
            {
                throw Refusal(current, id, token, "release");
            }
            await using var command = new NpgsqlCommand(ReleaseSql, connection, tx);
            command.Parameters.AddWithValue("id", id);
            command.Parameters.AddWithValue("delay_seconds", delay.TotalSeconds);
            command.Parameters.AddWithValue("from_status", current.Status);
            command.Parameters.Add(new NpgsqlParameter("reason", NpgsqlDbType.Text) { Value = (object?)reason ?? DBNull.Value });
            TaskRecord changed;
            await using (var reader = await command.ExecuteReaderAsync(ct))
            {
                await reader.ReadAsync(ct);
                changed = TaskRecord.Read(reader);
            }
            await tx.CommitAsync(ct);
            return changed;
        }, cancellationToken);
        if (delay == TimeSpan.Zero)
        {
            readySignal.Notify(tenant);
        }
        return record;
    }

    // ---- shared ----

    internal static async Task<TaskRecord?> ReadAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, Guid id, CancellationToken ct, bool forUpdate = false)
    {
        await using var command = new NpgsqlCommand(
            $"SELECT {TaskRecord.Columns} FROM tasks WHERE id = @id AND tenant_id = @tenant" + (forUpdate ? " FOR UPDATE" : ""), connection, tx);
        command.Parameters.AddWithValue("id", id);
        command.Parameters.AddWithValue("tenant", tenant);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? TaskRecord.Read(reader) : null;
    }

    /// <summary>Why a holder's call was refused: unknown task, stale token, or a state that does not allow it.</summary>
    internal static LifelineException Refusal(TaskRecord? current, Guid id, long token, string operation)
    {
        if (current is null)
        {
            return new NotFoundException("task", id.ToString());
        }
        if (current.FencingToken != token)
        {
            return new StaleFencingTokenException(id, token, current.FencingToken);
        }
        return new InvalidTaskStateException(id, current.Status, operation);
    }

    private void NotifyReady(Resolution? resolution)
    {
        if (resolution is null)
        {
            return;
        }
        foreach (var tenant in resolution.TenantsWithReadyTasks)
        {
            readySignal.Notify(tenant);
        }
    }
}

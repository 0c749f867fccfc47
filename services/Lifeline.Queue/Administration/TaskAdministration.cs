using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.Queue.Leasing;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Google.Protobuf;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;

namespace Lifeline.Queue.Administration;

/// <summary>Changes made by callers and operators rather than lease holders: cancel, add dependency, redrive.</summary>
public sealed partial class TaskAdministration(NpgsqlDataSource dataSource, ReadySignal readySignal, IConnectionMultiplexer redis,
    ILogger<TaskAdministration> logger)
{
    private static readonly string CancelSql = $"""
        WITH changed AS (
            UPDATE tasks t
            SET status = {TaskState.Sql(TaskState.Cancelled)}, lease_expires_at = NULL, completed_at = now(), updated_at = now(),
                error = jsonb_build_object('code', 'CANCELLED', 'message', @reason, 'retryable', false, 'severity', 'low')
            WHERE t.id = @id AND {TaskLifecycle.Cancel.FromGuard("t.status")}
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "cancelled", "@from_status", TaskState.Sql(TaskState.Cancelled), "@reason")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>
    /// Cancels a task that has not ended, and cascades to tasks that can no longer run without it. A worker
    /// holding the task is told through the registry's command list (its outcome would be refused anyway).
    /// </summary>
    public async Task<(TaskRecord Task, int Cascaded)> CancelAsync(string tenant, Guid id, string reason, CancellationToken cancellationToken)
    {
        var (task, resolution, holder) = await CancelInStoreAsync(tenant, id, reason, cancellationToken);
        foreach (var ready in resolution?.TenantsWithReadyTasks ?? [])
        {
            readySignal.Notify(ready); // after commit, once: failure-type dependents may have become ready
        }
        if (holder is not null)
        {
            try
            {
                var command = new WorkerCommand { CancelTask = new CancelTaskCommand { TaskId = id.ToString(), Reason = reason } };
                await WorkerMirror.PushCommandAsync(redis, tenant, holder, command.ToByteArray());
            }
            catch (RedisException ex)
            {
                LogCommandFailed(logger, id, ex);
            }
        }
        return (task, resolution?.Cancelled ?? 0);
    }

    private async Task<(TaskRecord Task, Resolution? Resolution, string? Holder)> CancelInStoreAsync(string tenant, Guid id, string reason, CancellationToken cancellationToken) =>
        await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var current = await LeaseHolderOperations.ReadAsync(connection, tx, tenant, id, ct, forUpdate: true)
                ?? throw new NotFoundException("task", id.ToString());
            if (!TaskLifecycle.Cancel.From.Contains(current.Status))
            {
                throw new InvalidTaskStateException(id, current.Status, "cancellation");
            }
            TaskRecord changed;
            await using (var command = new NpgsqlCommand(CancelSql, connection, tx))
            {
                command.Parameters.AddWithValue("id", id);
                command.Parameters.AddWithValue("reason", reason);
                command.Parameters.AddWithValue("from_status", current.Status);
                await using var reader = await command.ExecuteReaderAsync(ct);
                await reader.ReadAsync(ct);
                changed = TaskRecord.Read(reader);
            }
            var resolution = changed.HasDependents
                ? await DependencyResolver.ResolveAsync(connection, tx, [new EndedTask(id, TaskState.Cancelled)], ct)
                : null;
            await tx.CommitAsync(ct);
            return (changed, resolution, current.IsLeased ? current.AssignedWorkerId : null);
        }, cancellationToken);

    [LoggerMessage(EventId = 1601, Level = LogLevel.Warning, Message = "Could not tell the worker holding task {TaskId} that it was cancelled")]
    private static partial void LogCommandFailed(ILogger logger, Guid taskId, Exception exception);

    // Everything reachable from @from by following "waits for" edges, with the task that led there.
    private const string ReachableSql = """
        WITH RECURSIVE reach(id, parent) AS (
            SELECT @from::uuid, NULL::uuid
            UNION
            SELECT d.depends_on_id, d.task_id FROM task_dependencies d JOIN reach r ON d.task_id = r.id
        )
        SELECT id, parent FROM reach
        """;

    private static readonly string AddEdgeSql = $"""
        WITH edge AS (
            INSERT INTO task_dependencies (task_id, depends_on_id, tenant_id, type, state, created_at, resolved_at)
            VALUES (@id, @depends_on, @tenant, @type, @state, now(), CASE WHEN @state = 'waiting' THEN NULL ELSE now() END)
        ), target AS (
            UPDATE tasks SET has_dependents = true WHERE id = @depends_on AND NOT has_dependents
        ), changed AS (
            UPDATE tasks t SET unmet_dependencies = t.unmet_dependencies + @increment, updated_at = now()
            WHERE t.id = @id
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "dependency_added", TaskState.Sql(TaskState.Pending), TaskState.Sql(TaskState.Pending), "@message",
                "jsonb_build_object('depends_on_task_id', @depends_on::text, 'type', @type, 'state', @state)", worker: "NULL", token: "NULL")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>
    /// Makes a pending task wait for another. Graph changes of a tenant are serialized by an advisory
    /// lock, so two concurrent additions can never together close a cycle that each alone would not.
    /// </summary>
    public async Task<TaskRecord> AddDependencyAsync(string tenant, Guid id, Guid dependsOn, string type, CancellationToken cancellationToken)
    {
        return await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            await using (var graphLock = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended('lifeline.queue.dependencies:' || @tenant, 0))", connection, tx))
            {
                graphLock.Parameters.AddWithValue("tenant", tenant);
                await graphLock.ExecuteNonQueryAsync(ct);
            }
            // Lock both rows in id order: the dependency cannot end unseen before this edge commits.
            var rows = new Dictionary<Guid, TaskRecord>();
            await using (var lockRows = new NpgsqlCommand(
                $"SELECT {TaskRecord.Columns} FROM tasks WHERE tenant_id = @tenant AND id = ANY(@ids) ORDER BY id FOR UPDATE", connection, tx))
            {
                lockRows.Parameters.AddWithValue("tenant", tenant);
                lockRows.Parameters.AddWithValue("ids", new[] { id, dependsOn });
                await using var reader = await lockRows.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var r = TaskRecord.Read(reader);
                    rows[r.Id] = r;
                }
            }
            var task = rows.GetValueOrDefault(id) ?? throw new NotFoundException("task", id.ToString());
            var target = rows.GetValueOrDefault(dependsOn) ?? throw new NotFoundException("task", dependsOn.ToString());
            if (task.Status != TaskState.Pending)
            {
                throw new InvalidTaskStateException(id, task.Status, "adding a dependency");
            }
            await using (var existing = new NpgsqlCommand("SELECT type FROM task_dependencies WHERE task_id = @id AND depends_on_id = @depends_on", connection, tx))
            {
                existing.Parameters.AddWithValue("id", id);
                existing.Parameters.AddWithValue("depends_on", dependsOn);
                if (await existing.ExecuteScalarAsync(ct) is string existingType)
                {
                    if (existingType == type)
                    {
                        return task; // already there: adding it again changes nothing
                    }
                    throw new PreconditionFailedException("DEPENDENCY_EXISTS",
                        $"Task {id} already depends on {dependsOn} with type {existingType}.");
                }
            }
            await ThrowIfCycleAsync(connection, tx, id, dependsOn, ct);
            var state = DependencyResolver.Evaluate(type, target.Status) switch
            {
                null => "waiting",
                true => "met",
                false => throw new DependencyUnsatisfiableException(dependsOn, target.Status, type),
            };
            await using var add = new NpgsqlCommand(AddEdgeSql, connection, tx);
            add.Parameters.AddWithValue("id", id);
            add.Parameters.AddWithValue("depends_on", dependsOn);
            add.Parameters.AddWithValue("tenant", tenant);
            add.Parameters.AddWithValue("type", type);
            add.Parameters.AddWithValue("state", state);
            add.Parameters.AddWithValue("increment", state == "waiting" ? 1 : 0);
            add.Parameters.AddWithValue("message", $"waits for {dependsOn} ({type})");
            TaskRecord changed;
            await using (var reader = await add.ExecuteReaderAsync(ct))
            {
                await reader.ReadAsync(ct);
                changed = TaskRecord.Read(reader);
            }
            await tx.CommitAsync(ct);
            return changed;
        }, cancellationToken);
    }

    private static async Task ThrowIfCycleAsync(NpgsqlConnection connection, NpgsqlTransaction tx, Guid id, Guid dependsOn, CancellationToken ct)
    {
        var parentOf = new Dictionary<Guid, Guid?>();
        await using var command = new NpgsqlCommand(ReachableSql, connection, tx);
        command.Parameters.AddWithValue("from", dependsOn);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            parentOf.TryAdd(reader.GetGuid(0), reader.IsDBNull(1) ? null : reader.GetGuid(1));
        }
        if (!parentOf.ContainsKey(id))
        {
            return;
        }
        // dependsOn -> ... -> id exists; with the new edge id -> dependsOn it would close a cycle.
        var chain = new List<string>();
        for (Guid? node = id; node is { } n; node = parentOf[n])
        {
            chain.Add(n.ToString());
            if (n == dependsOn)
            {
                break;
            }
        }
        chain.Reverse();
        chain.Insert(0, id.ToString());
        throw new DependencyCycleException(chain);
    }

    // A dead letter may have died running (started_at and deadline_at set), assigned, or expired: it goes back to
    // pending as the lease and start never happened — ck_tasks_not_started_before_running — keeping its last error
    // (as a retry does) and its fencing token, which the next lease raises.
    private static readonly string RedriveSql = $"""
        WITH changed AS (
            UPDATE tasks t
            SET status = {TaskState.Sql(TaskState.Pending)}, retry_count = 0, not_before = now(), completed_at = NULL, dead_lettered_at = NULL,
                started_at = NULL, deadline_at = NULL, lease_expires_at = NULL, progress_percent = 0, progress_message = NULL,
                updated_at = now()
            WHERE t.id = ANY(@ids) AND {TaskLifecycle.Redrive.FromGuard("t.status")}
            RETURNING t.id, t.tenant_id, t.type, t.assigned_worker_id, t.fencing_token
        ), history AS (
            {History.InsertFrom("changed", "redriven", TaskState.Sql(TaskState.DeadLettered), TaskState.Sql(TaskState.Pending), "'redriven by an operator'", worker: "NULL", token: "NULL")}
        )
        SELECT id FROM changed
        """;

    private static readonly string PickDeadLettersSql = $"""
        SELECT id FROM tasks
        WHERE tenant_id = @tenant AND {TaskLifecycle.Redrive.FromGuard("status")} AND (@type::text IS NULL OR type = @type)
        ORDER BY dead_lettered_at, id LIMIT @limit FOR UPDATE SKIP LOCKED
        """;

    /// <summary>
    /// Returns dead letters to pending with a fresh retry budget: the given ones (all must be dead letters),
    /// or up to <paramref name="limit"/> of a type (oldest first).
    /// </summary>
    public async Task<IReadOnlyList<Guid>> RedriveAsync(string tenant, IReadOnlyList<Guid> ids, string? type, int limit, CancellationToken cancellationToken)
    {
        var redriven = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            Guid[] selected;
            if (ids.Count > 0)
            {
                var found = new Dictionary<Guid, string>();
                await using (var lockRows = new NpgsqlCommand(
                    "SELECT id, status FROM tasks WHERE tenant_id = @tenant AND id = ANY(@ids) ORDER BY id FOR UPDATE", connection, tx))
                {
                    lockRows.Parameters.AddWithValue("tenant", tenant);
                    lockRows.Parameters.AddWithValue("ids", ids.ToArray());
                    await using var reader = await lockRows.ExecuteReaderAsync(ct);
                    while (await reader.ReadAsync(ct))
                    {
                        found[reader.GetGuid(0)] = reader.GetString(1);
                    }
                }
                foreach (var taskId in ids)
                {
                    if (!found.TryGetValue(taskId, out var status))
                    {
                        throw new NotFoundException("task", taskId.ToString());
                    }
                    if (!TaskLifecycle.Redrive.From.Contains(status))
                    {
                        throw new InvalidTaskStateException(taskId, status, "redrive");
                    }
                }
                selected = ids.ToArray();
            }
            else
            {
                await using var pick = new NpgsqlCommand(PickDeadLettersSql, connection, tx);
                pick.Parameters.AddWithValue("tenant", tenant);
                pick.Parameters.Add(new NpgsqlParameter("type", NpgsqlDbType.Text) { Value = (object?)type ?? DBNull.Value });
                pick.Parameters.AddWithValue("limit", limit);
                var list = new List<Guid>();
                await using (var reader = await pick.ExecuteReaderAsync(ct))
                {
                    while (await reader.ReadAsync(ct))
                    {
                        list.Add(reader.GetGuid(0));
                    }
                }
                selected = list.ToArray();
            }
            var done = new List<Guid>();
            if (selected.Length > 0)
            {
                await using var redrive = new NpgsqlCommand(RedriveSql, connection, tx);
                redrive.Parameters.AddWithValue("ids", selected);
                await using var reader = await redrive.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    done.Add(reader.GetGuid(0));
                }
            }
            await tx.CommitAsync(ct);
            return done;
        }, cancellationToken);
        if (redriven.Count > 0)
        {
            readySignal.Notify(tenant);
        }
        return redriven;
    }
}

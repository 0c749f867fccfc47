using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NpgsqlTypes;
using Microsoft.Extensions.Options;
using System.Diagnostics;
using Lifeline.Queue.Telemetry;
using Lifeline.ServiceDefaults.Telemetry;

namespace Lifeline.Queue.Enqueuing;

/// <summary>
/// Creates tasks: one, or a batch of up to 10,000 that may form a DAG, all in one transaction.
/// Idempotency keys are enforced by a unique index, so concurrent enqueues of one key create one task.
/// Single enqueues that arrive together go through group commit: one INSERT for all of them, each caller
/// answered on its own (created, or the existing task of its idempotency key).
/// </summary>
public sealed class TaskEnqueuer
{
    private readonly NpgsqlDataSource dataSource;
    private readonly ReadySignal readySignal;
    private readonly QueueTelemetry telemetry;
    private readonly GroupCommit<(string Tenant, NewTask Task, string? TraceParent), (TaskRecord Task, bool Created)> singles;

    public TaskEnqueuer([FromKeyedServices(ServiceDataSource.HotPathKey)] NpgsqlDataSource dataSource, ReadySignal readySignal, IOptions<QueueOptions> options,
        QueueTelemetry telemetry)
    {
        this.dataSource = dataSource;
        this.readySignal = readySignal;
        this.telemetry = telemetry;
        singles = new(ApplySinglesAsync, options.Value.GroupCommitPolicy);
    }

    private static readonly string InsertManySql = $"""
        WITH ins AS (
            INSERT INTO tasks (id, tenant_id, type, status, priority, payload, created_at, updated_at, not_before,
                               max_retries, timeout_seconds, idempotency_key, backoff, initial_interval_ms,
                               maximum_interval_ms, jitter, workflow_id, trace_parent)
            SELECT b.id, b.tenant, b.type, {TaskState.Sql(TaskState.Pending)}, b.priority, b.payload::jsonb, now(), now(), COALESCE(b.not_before, now()),
                   b.max_retries, b.timeout_seconds, b.idempotency_key, b.backoff, b.initial_ms, b.maximum_ms, b.jitter, b.workflow_id,
                   b.trace_parent
            FROM unnest(@ids::uuid[], @tenants::text[], @types::text[], @priorities::int[], @payloads::text[], @not_befores::timestamptz[],
                        @max_retries::int[], @timeouts::int[], @keys::text[], @backoffs::text[], @initial_ms::bigint[],
                        @maximum_ms::bigint[], @jitters::float8[], @workflow_ids::text[], @trace_parents::text[])
                 AS b(id, tenant, type, priority, payload, not_before, max_retries, timeout_seconds, idempotency_key, backoff,
                      initial_ms, maximum_ms, jitter, workflow_id, trace_parent)
            ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING {TaskRecord.Columns}
        ), history AS (
            {History.InsertFrom("ins", "enqueued", "NULL", TaskState.Sql(TaskState.Pending), worker: "NULL", token: "NULL")}
        )
        SELECT {TaskRecord.Columns} FROM ins
        """;

    private static readonly string SelectByKeysSql =
        $"SELECT {TaskRecord.Columns} FROM tasks WHERE (tenant_id, idempotency_key) IN (SELECT * FROM unnest(@tenants::text[], @keys::text[]))";

    /// <summary>
    /// Enqueues one task (with whatever other single enqueues are waiting). The task keeps the enqueue's trace context
    /// (its span's, else the call's) as W3C traceparent, for the spans of its later steps to link to.
    /// </summary>
    public Task<(TaskRecord Task, bool Created)> EnqueueAsync(string tenant, NewTask task, CancellationToken cancellationToken)
        => QueueTelemetry.Source.HasListeners()
            ? QueueTelemetry.TraceAsync("queue.enqueue", tenant, Guid.Empty, (singles, tenant, task, cancellationToken),
                static s => s.singles.RunAsync((s.tenant, s.task, TaskTrace.TraceParentOf(Activity.Current)), s.cancellationToken), static r => r.Task)
            : singles.RunAsync((tenant, task, TaskTrace.TraceParentOf(Activity.Current)), cancellationToken);

    /// <summary>
    /// Inserts a group of single enqueues in one transaction. An entry whose idempotency key exists (or that
    /// repeats the key of an earlier entry of the group) resolves to the existing task, not created.
    /// </summary>
    private async Task<IReadOnlyList<GroupOutcome<(TaskRecord Task, bool Created)>>> ApplySinglesAsync(
        IReadOnlyList<(string Tenant, NewTask Task, string? TraceParent)> group, CancellationToken cancellationToken)
    {
        var outcomes = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var answers = new (TaskRecord Task, bool Created)?[group.Count];
            var ids = group.Select(_ => Guid.CreateVersion7()).ToArray();
            var created = new Dictionary<Guid, TaskRecord>();
            await using (var insert = new NpgsqlCommand(InsertManySql, connection, tx))
            {
                AddTaskArrays(insert, group, ids);
                await using var reader = await insert.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var record = TaskRecord.Read(reader);
                    created[record.Id] = record;
                }
            }
            var existing = new List<int>();
            for (var i = 0; i < group.Count; i++)
            {
                if (created.TryGetValue(ids[i], out var record))
                {
                    answers[i] = (record, true);
                }
                else
                {
                    existing.Add(i);
                }
            }
            if (existing.Count > 0)
            {
                // Their keys exist (committed before, or inserted by an earlier entry of this group): INSERT … ON CONFLICT
                // waited for any transaction still inserting a key, so the row is visible to this statement.
                var byKey = new Dictionary<(string, string), TaskRecord>();
                await using var select = new NpgsqlCommand(SelectByKeysSql, connection, tx);
                select.Parameters.AddWithValue("tenants", existing.Select(i => group[i].Tenant).ToArray());
                select.Parameters.AddWithValue("keys", existing.Select(i => group[i].Task.IdempotencyKey!).ToArray());
                await using var reader = await select.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var record = TaskRecord.Read(reader);
                    byKey[(record.TenantId, record.IdempotencyKey!)] = record;
                }
                foreach (var i in existing)
                {
                    answers[i] = byKey.TryGetValue((group[i].Tenant, group[i].Task.IdempotencyKey!), out var record) ? (record, false) : null;
                }
            }
            await tx.CommitAsync(ct);
            return answers.Select(a => a is { } answer
                ? GroupOutcome<(TaskRecord Task, bool Created)>.Of(answer)
                : GroupOutcome<(TaskRecord Task, bool Created)>.Refused(
                    new ConcurrencyConflictException("The idempotency key is being created concurrently; retry.", TimeSpan.FromMilliseconds(100)))).ToList();
        }, cancellationToken);
        // Committed: count what was created.
        foreach (var outcome in outcomes)
        {
            if (outcome.Error is null && outcome.Value.Created)
            {
                telemetry.Enqueued(outcome.Value.Task.Type);
            }
        }
        foreach (var tenant in outcomes.Where(o => o.Error is null && o.Value.Created).Select(o => o.Value.Task.TenantId).Distinct())
        {
            readySignal.Notify(tenant);
        }
        return outcomes;
    }

    private static void AddTaskArrays(NpgsqlCommand command, IReadOnlyList<(string Tenant, NewTask Task, string? TraceParent)> group, Guid[] ids)
    {
        command.Parameters.AddWithValue("ids", ids);
        command.Parameters.AddWithValue("tenants", group.Select(g => g.Tenant).ToArray());
        command.Parameters.AddWithValue("types", group.Select(g => g.Task.Type).ToArray());
        command.Parameters.AddWithValue("priorities", group.Select(g => g.Task.Priority).ToArray());
        command.Parameters.AddWithValue("payloads", group.Select(g => g.Task.Payload).ToArray());
        command.Parameters.Add(new NpgsqlParameter("not_befores", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz)
        {
            Value = group.Select(g => g.Task.NotBefore is { } nb ? (object)nb : DBNull.Value).ToArray(),
        });
        command.Parameters.AddWithValue("max_retries", group.Select(g => g.Task.MaxRetries).ToArray());
        command.Parameters.AddWithValue("timeouts", group.Select(g => g.Task.TimeoutSeconds).ToArray());
        command.Parameters.Add(new NpgsqlParameter("keys", NpgsqlDbType.Array | NpgsqlDbType.Text)
        {
            Value = group.Select(g => (object?)g.Task.IdempotencyKey ?? DBNull.Value).ToArray(),
        });
        command.Parameters.AddWithValue("backoffs", group.Select(g => RetrySchedule.StrategyName(g.Task.Retry.Strategy)).ToArray());
        command.Parameters.AddWithValue("initial_ms", group.Select(g => (long)g.Task.Retry.Initial.TotalMilliseconds).ToArray());
        command.Parameters.AddWithValue("maximum_ms", group.Select(g => (long)g.Task.Retry.Maximum.TotalMilliseconds).ToArray());
        command.Parameters.AddWithValue("jitters", group.Select(g => g.Task.Retry.Jitter).ToArray());
        command.Parameters.Add(new NpgsqlParameter("workflow_ids", NpgsqlDbType.Array | NpgsqlDbType.Text)
        {
            Value = group.Select(g => (object?)g.Task.WorkflowId ?? DBNull.Value).ToArray(),
        });
        command.Parameters.Add(new NpgsqlParameter("trace_parents", NpgsqlDbType.Array | NpgsqlDbType.Text)
        {
            Value = group.Select(g => (object?)g.TraceParent ?? DBNull.Value).ToArray(),
        });
    }

    // ---- batches ----

    private static readonly string InsertBatchSql = $"""
        INSERT INTO tasks (id, tenant_id, type, status, priority, payload, created_at, updated_at, not_before, max_retries,
                           timeout_seconds, idempotency_key, backoff, initial_interval_ms, maximum_interval_ms, jitter,
                           unmet_dependencies, has_dependents, workflow_id, trace_parent)
        SELECT b.id, @tenant, b.type, {TaskState.Sql(TaskState.Pending)}, b.priority, b.payload::jsonb, now(), now(), COALESCE(b.not_before, now()),
               b.max_retries, b.timeout_seconds, b.idempotency_key, b.backoff, b.initial_ms, b.maximum_ms, b.jitter,
               b.unmet, b.has_dependents, b.workflow_id, @trace_parent
        FROM unnest(@ids::uuid[], @types::text[], @priorities::int[], @payloads::text[], @not_befores::timestamptz[],
                    @max_retries::int[], @timeouts::int[], @keys::text[], @backoffs::text[], @initial_ms::bigint[],
                    @maximum_ms::bigint[], @jitters::float8[], @unmet::int[], @has_dependents::bool[], @workflow_ids::text[])
             AS b(id, type, priority, payload, not_before, max_retries, timeout_seconds, idempotency_key, backoff,
                  initial_ms, maximum_ms, jitter, unmet, has_dependents, workflow_id)
        ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        """;

    private static readonly string InsertBatchHistorySql = $"""
        INSERT INTO task_history (tenant_id, task_id, task_type, event_type, from_status, to_status)
        SELECT @tenant, b.id, b.type, 'enqueued', NULL, {TaskState.Sql(TaskState.Pending)} FROM unnest(@ids::uuid[], @types::text[]) AS b(id, type)
        """;

    private const string InsertEdgesSql = """
        INSERT INTO task_dependencies (task_id, depends_on_id, tenant_id, type, state, created_at, resolved_at)
        SELECT e.task_id, e.depends_on_id, @tenant, e.type, e.state, now(), CASE WHEN e.state = 'waiting' THEN NULL ELSE now() END
        FROM unnest(@task_ids::uuid[], @depends_on_ids::uuid[], @edge_types::text[], @states::text[])
             AS e(task_id, depends_on_id, type, state)
        ON CONFLICT (task_id, depends_on_id) DO NOTHING
        """;

    // Locks the existing tasks the batch depends on (so none of them can end unseen before our edges
    // commit) and marks them as having dependents.
    private const string LockTargetsSql = """
        UPDATE tasks SET has_dependents = true
        WHERE tenant_id = @tenant AND id = ANY(@ids)
        RETURNING id, status
        """;

    /// <summary>
    /// Enqueues a validated batch. Cycles among the batch must have been refused already
    /// (<see cref="DependencyGraph"/>); edges to existing tasks cannot form cycles, because existing
    /// tasks never wait for new ones.
    /// </summary>
    public async Task<(IReadOnlyList<TaskRecord> Tasks, int Created)> EnqueueBatchAsync(
        string tenant, IReadOnlyList<NewBatchTask> batch, CancellationToken cancellationToken)
    {
        using var activity = QueueTelemetry.Source.StartActivity("queue.enqueue_batch");
        activity?.SetTag(TaskTrace.TenantTag, tenant);
        activity?.SetTag("lifeline.tasks", batch.Count);
        var traceParent = TaskTrace.TraceParentOf(activity ?? Activity.Current);
        var result = await SerializationRetry.RunAsync(async ct =>
        {
            for (var round = 0; ; round++)
            {
                var outcome = await TryEnqueueBatchAsync(tenant, batch, traceParent, ct);
                if (outcome is not null)
                {
                    return outcome.Value;
                }
                if (round == 3)
                {
                    throw new ConcurrencyConflictException("Idempotency keys of this batch are being created concurrently; retry.", TimeSpan.FromMilliseconds(100));
                }
            }
        }, cancellationToken);
        if (result.Created > 0)
        {
            // Committed: count what was created.
            foreach (var (type, count) in result.CreatedByType)
            {
                telemetry.Enqueued(type, count);
            }
            readySignal.Notify(tenant);
        }
        return (result.Tasks, result.Created);
    }

    private async Task<(IReadOnlyList<TaskRecord> Tasks, int Created, Dictionary<string, int> CreatedByType)?> TryEnqueueBatchAsync(string tenant, IReadOnlyList<NewBatchTask> batch,
        string? traceParent, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);

        // 1. Entries whose idempotency key exists already resolve to the existing task.
        var ids = new Guid[batch.Count];
        var isNew = new bool[batch.Count];
        var keys = batch.Select(b => b.Task.IdempotencyKey).Where(k => k is not null).Distinct().ToArray();
        var existingByKey = new Dictionary<string, Guid>();
        if (keys.Length > 0)
        {
            await using var select = new NpgsqlCommand(
                "SELECT idempotency_key, id FROM tasks WHERE tenant_id = @tenant AND idempotency_key = ANY(@keys)", connection, tx);
            select.Parameters.AddWithValue("tenant", tenant);
            select.Parameters.AddWithValue("keys", keys);
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                existingByKey[reader.GetString(0)] = reader.GetGuid(1);
            }
        }
        // (Validation refuses a key given twice in one batch.)
        for (var i = 0; i < batch.Count; i++)
        {
            var key = batch[i].Task.IdempotencyKey;
            if (key is not null && existingByKey.TryGetValue(key, out var existing))
            {
                ids[i] = existing;
            }
            else
            {
                ids[i] = Guid.CreateVersion7();
                isNew[i] = true;
            }
        }

        // 2. Lock existing targets: external ids, and existing (deduplicated) entries that new entries wait for.
        var targets = new HashSet<Guid>();
        for (var i = 0; i < batch.Count; i++)
        {
            if (!isNew[i])
            {
                continue;
            }
            foreach (var edge in batch[i].DependsOn)
            {
                if (edge.TaskId is { } external)
                {
                    targets.Add(external);
                }
                else if (!isNew[edge.BatchIndex!.Value])
                {
                    targets.Add(ids[edge.BatchIndex.Value]);
                }
            }
        }
        var targetStatus = new Dictionary<Guid, string>();
        if (targets.Count > 0)
        {
            await using var lockTargets = new NpgsqlCommand(LockTargetsSql, connection, tx);
            lockTargets.Parameters.AddWithValue("tenant", tenant);
            lockTargets.Parameters.AddWithValue("ids", targets.Order().ToArray());
            await using var reader = await lockTargets.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                targetStatus[reader.GetGuid(0)] = reader.GetString(1);
            }
            var missing = targets.FirstOrDefault(t => !targetStatus.ContainsKey(t));
            if (missing != Guid.Empty)
            {
                throw new NotFoundException("task", missing.ToString());
            }
        }

        // 3. Edges and unmet counts.
        var unmet = new int[batch.Count];
        var hasDependents = new bool[batch.Count];
        var edgeTask = new List<Guid>();
        var edgeTarget = new List<Guid>();
        var edgeType = new List<string>();
        var edgeState = new List<string>();
        for (var i = 0; i < batch.Count; i++)
        {
            if (!isNew[i])
            {
                continue;
            }
            foreach (var edge in batch[i].DependsOn)
            {
                Guid target;
                string state;
                if (edge.BatchIndex is { } j && isNew[j])
                {
                    target = ids[j];
                    hasDependents[j] = true;
                    state = "waiting";
                }
                else
                {
                    target = edge.TaskId ?? ids[edge.BatchIndex!.Value];
                    var status = targetStatus[target];
                    state = DependencyResolver.Evaluate(edge.Type, status) switch
                    {
                        null => "waiting",
                        true => "met",
                        false => throw new DependencyUnsatisfiableException(target, status, edge.Type),
                    };
                }
                if (state == "waiting")
                {
                    unmet[i]++;
                }
                edgeTask.Add(ids[i]);
                edgeTarget.Add(target);
                edgeType.Add(edge.Type);
                edgeState.Add(state);
            }
        }

        // 4. Insert the new tasks; if a concurrent enqueue took one of our keys meanwhile, start over.
        var newIndexes = Enumerable.Range(0, batch.Count).Where(i => isNew[i]).ToArray();
        if (newIndexes.Length > 0)
        {
            await using var insert = new NpgsqlCommand(InsertBatchSql, connection, tx);
            insert.Parameters.AddWithValue("tenant", tenant);
            insert.Parameters.Add(new NpgsqlParameter("trace_parent", NpgsqlDbType.Text) { Value = (object?)traceParent ?? DBNull.Value });
            insert.Parameters.AddWithValue("ids", newIndexes.Select(i => ids[i]).ToArray());
            insert.Parameters.AddWithValue("types", newIndexes.Select(i => batch[i].Task.Type).ToArray());
            insert.Parameters.AddWithValue("priorities", newIndexes.Select(i => batch[i].Task.Priority).ToArray());
            insert.Parameters.AddWithValue("payloads", newIndexes.Select(i => batch[i].Task.Payload).ToArray());
            insert.Parameters.Add(new NpgsqlParameter("not_befores", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz)
            {
                Value = newIndexes.Select(i => batch[i].Task.NotBefore is { } nb ? (object)nb : DBNull.Value).ToArray(),
            });
            insert.Parameters.AddWithValue("max_retries", newIndexes.Select(i => batch[i].Task.MaxRetries).ToArray());
            insert.Parameters.AddWithValue("timeouts", newIndexes.Select(i => batch[i].Task.TimeoutSeconds).ToArray());
            insert.Parameters.Add(new NpgsqlParameter("keys", NpgsqlDbType.Array | NpgsqlDbType.Text)
            {
                Value = newIndexes.Select(i => (object?)batch[i].Task.IdempotencyKey ?? DBNull.Value).ToArray(),
            });
            insert.Parameters.AddWithValue("backoffs", newIndexes.Select(i => RetrySchedule.StrategyName(batch[i].Task.Retry.Strategy)).ToArray());
            insert.Parameters.AddWithValue("initial_ms", newIndexes.Select(i => (long)batch[i].Task.Retry.Initial.TotalMilliseconds).ToArray());
            insert.Parameters.AddWithValue("maximum_ms", newIndexes.Select(i => (long)batch[i].Task.Retry.Maximum.TotalMilliseconds).ToArray());
            insert.Parameters.AddWithValue("jitters", newIndexes.Select(i => batch[i].Task.Retry.Jitter).ToArray());
            insert.Parameters.AddWithValue("unmet", newIndexes.Select(i => unmet[i]).ToArray());
            insert.Parameters.AddWithValue("has_dependents", newIndexes.Select(i => hasDependents[i]).ToArray());
            insert.Parameters.Add(new NpgsqlParameter("workflow_ids", NpgsqlDbType.Array | NpgsqlDbType.Text)
            {
                Value = newIndexes.Select(i => (object?)batch[i].Task.WorkflowId ?? DBNull.Value).ToArray(),
            });
            var inserted = await insert.ExecuteNonQueryAsync(ct);
            if (inserted != newIndexes.Length)
            {
                await tx.RollbackAsync(ct);
                return null;
            }

            await using var history = new NpgsqlCommand(InsertBatchHistorySql, connection, tx);
            history.Parameters.AddWithValue("tenant", tenant);
            history.Parameters.AddWithValue("ids", newIndexes.Select(i => ids[i]).ToArray());
            history.Parameters.AddWithValue("types", newIndexes.Select(i => batch[i].Task.Type).ToArray());
            await history.ExecuteNonQueryAsync(ct);
        }
        if (edgeTask.Count > 0)
        {
            await using var edges = new NpgsqlCommand(InsertEdgesSql, connection, tx);
            edges.Parameters.AddWithValue("tenant", tenant);
            edges.Parameters.AddWithValue("task_ids", edgeTask.ToArray());
            edges.Parameters.AddWithValue("depends_on_ids", edgeTarget.ToArray());
            edges.Parameters.AddWithValue("edge_types", edgeType.ToArray());
            edges.Parameters.AddWithValue("states", edgeState.ToArray());
            await edges.ExecuteNonQueryAsync(ct);
        }

        // 5. Read back every task of the batch, in request order.
        var byId = new Dictionary<Guid, TaskRecord>();
        await using (var read = new NpgsqlCommand($"SELECT {TaskRecord.Columns} FROM tasks WHERE id = ANY(@ids)", connection, tx))
        {
            read.Parameters.AddWithValue("ids", ids.Distinct().ToArray());
            await using var reader = await read.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var record = TaskRecord.Read(reader);
                byId[record.Id] = record;
            }
        }
        await tx.CommitAsync(ct);
        var createdByType = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var i in newIndexes)
        {
            createdByType[batch[i].Task.Type] = createdByType.GetValueOrDefault(batch[i].Task.Type) + 1;
        }
        return (ids.Select(id => byId[id]).ToList(), newIndexes.Length, createdByType);
    }
}

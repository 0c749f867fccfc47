using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Lifeline.Queue.Telemetry;
using NpgsqlTypes;
using Microsoft.Extensions.Options;

namespace Lifeline.Queue.Leasing;

/// <summary>A validated failure report.</summary>
public sealed record FailureReport(StoredError Error, TimeSpan? RetryAfter);

/// <summary>A validated completion of a batch.</summary>
public sealed record Completion(Guid TaskId, long FencingToken, string? Result);

/// <summary>The outcome of one completion of a batch: null error means accepted.</summary>
public sealed record CompletionOutcome(Guid TaskId, LifelineException? Refusal);

/// <summary>One holder's change of one task, as the group statements take it (fields a kind does not use stay null).</summary>
public sealed record HolderChange(string Tenant, Guid Id, long Token, int Percent = 0, string? Message = null, double? LeaseSeconds = null, string? Result = null);

/// <summary>
/// What the holder of a lease may do: start, report progress, extend, complete, fail, release. Every
/// change is guarded on the task's current fencing token and state in the statement that makes it, so
/// a stale holder's call matches no row and changes nothing; the refusal then says why.
/// <para>
/// Start, progress, extend, complete and fail go through group commit (<see cref="GroupCommit{TItem, TResult}"/>):
/// the calls of one kind that arrive together are applied by one set-based statement in one transaction,
/// with their history rows and the resolution of waiting dependents, and each caller gets its own answer.
/// </para>
/// </summary>
public sealed class LeaseHolderOperations
{
    private readonly NpgsqlDataSource dataSource;
    private readonly ReadySignal readySignal;
    private readonly QueueTelemetry telemetry;
    private readonly GroupCommit<HolderChange, TaskRecord> starts, progress, extensions, completions;
    private readonly GroupCommit<FailItem, (TaskRecord Task, bool WillRetry)> failures;

    public LeaseHolderOperations([FromKeyedServices(ServiceDataSource.HotPathKey)] NpgsqlDataSource dataSource, ReadySignal readySignal, IOptions<QueueOptions> options,
        QueueTelemetry telemetry)
    {
        this.dataSource = dataSource;
        this.readySignal = readySignal;
        this.telemetry = telemetry;
        var policy = options.Value.GroupCommitPolicy;
        starts = new((items, ct) => ApplyGuardedAsync(Start, items, ct), policy);
        progress = new((items, ct) => ApplyGuardedAsync(Progress, items, ct), policy);
        extensions = new((items, ct) => ApplyGuardedAsync(Extend, items, ct), policy);
        completions = new((items, ct) => ApplyGuardedAsync(Complete, items, ct), policy);
        failures = new(ApplyFailuresAsync, policy);
    }

    /// <summary>A guarded change: which states allow it, what it sets, its history event, and which state makes a repeat harmless.</summary>
    private sealed record GuardedKind(string Operation, string Sql, string? IdempotentIn)
    {
        /// <summary>Counts a change of this kind once it committed.</summary>
        public Action<QueueTelemetry, TaskRecord>? Count { get; init; }
    }

    // One UPDATE joins each call's row to its task through the primary key (a lookup per call; the calls sorted by id, so
    // concurrent groups lock rows in the same order) and changes the rows whose tenant, token and current state allow it
    // (the state as it is when the row is locked: a row changed since the statement's snapshot is checked again). No
    // join compares every call with every row: a generic plan that did (a nested loop with a join filter) cost n²
    // comparisons per group. The state before the change (for the history) is read from the changed row
    // (the expression fromStatus), so no row is written twice: an earlier form locked every row FOR UPDATE first and then
    // updated it, a lock record in the heap and the WAL per task (3 % of the statement's time at 100 calls a group). An id
    // may appear twice when two calls race; one of them changes the row.
    private static string GuardedSql(string[] allowedStates, string set, string eventType, string toStatus, string fromStatus,
        string message = "NULL", string details = "NULL") => $"""
        WITH changed AS (
            UPDATE tasks t SET {set}, updated_at = now()
            FROM (SELECT * FROM unnest(@tenants::text[], @ids::uuid[], @tokens::bigint[], @percents::int[], @messages::text[],
                                       @lease_seconds::float8[], @results::text[])
                            AS i(tenant_id, id, token, percent, message, lease_seconds, result)
                  ORDER BY id) i
            WHERE t.id = i.id AND t.tenant_id = i.tenant_id AND t.fencing_token = i.token AND t.status IN ({TaskState.SqlList(allowedStates)})
            RETURNING {TaskRecord.ColumnsOf("t")}, {fromStatus} AS from_status, i.message AS in_message, i.percent AS in_percent,
                      i.lease_seconds AS in_lease_seconds
        ), history AS (
            {History.InsertFrom("changed", eventType, "from_status", toStatus, message, details)}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    // A start is only of an assigned task; progress and extensions leave the state as it was; a completion ends an
    // assigned or a running task, and which one it was is in started_at, which it keeps (ck_tasks_running_started: a
    // running task has started; ck_tasks_not_started_before_running: an assigned one has not).
    private static readonly string StartedFrom = TaskState.Sql(TaskLifecycle.Start.From.Single());
    private const string Unchanged = "t.status";
    private static readonly string CompletedFrom =
        $"CASE WHEN t.started_at IS NULL THEN {TaskState.Sql(TaskState.Assigned)} ELSE {TaskState.Sql(TaskState.Running)} END";

    private static readonly GuardedKind Start = new("start", GuardedSql(TaskLifecycle.Start.From,
        $"status = {TaskState.Sql(TaskState.Running)}, started_at = now(), deadline_at = now() + make_interval(secs => t.timeout_seconds), " +
        "lease_expires_at = now() + make_interval(secs => t.lease_seconds)",
        "started", TaskState.Sql(TaskState.Running), StartedFrom), TaskState.Running) { Count = static (t, task) => t.Started(task) };

    private static readonly GuardedKind Progress = new("progress", GuardedSql(TaskState.Leased,
        "progress_percent = i.percent, progress_message = i.message, lease_seconds = COALESCE(i.lease_seconds, t.lease_seconds), " +
        "lease_expires_at = now() + make_interval(secs => COALESCE(i.lease_seconds, t.lease_seconds))",
        "progress", "status", Unchanged, "in_message", "jsonb_build_object('percent', in_percent)"), null);

    private static readonly GuardedKind Extend = new("extending the lease", GuardedSql(TaskState.Leased,
        "lease_seconds = i.lease_seconds, lease_expires_at = now() + make_interval(secs => i.lease_seconds)",
        "lease_extended", "status", Unchanged, details: "jsonb_build_object('lease_seconds', in_lease_seconds)"), null);

    private static readonly GuardedKind Complete = new("completion", GuardedSql(TaskLifecycle.Complete.From,
        $"status = {TaskState.Sql(TaskState.Completed)}, result = i.result::jsonb, error = NULL, completed_at = now(), lease_expires_at = NULL, progress_percent = 100",
        "completed", TaskState.Sql(TaskState.Completed), CompletedFrom, details: RunDuration), TaskState.Completed) { Count = static (t, task) => t.Completed(task) };

    // How long the attempt ran (from start, or from the lease when it was never started); reported to the registry.
    private const string RunDuration = "jsonb_build_object('duration_ms', floor(extract(epoch FROM now() - COALESCE(started_at, assigned_at)) * 1000)::bigint)";

    // Each holder's call has a span (when traced) linked to its task's enqueue; untraced, the call goes straight to its group.
    public Task<TaskRecord> StartAsync(string tenant, Guid id, long token, CancellationToken ct) =>
        Run(starts, "queue.start", new HolderChange(tenant, id, token), ct);

    public Task<TaskRecord> ReportProgressAsync(string tenant, Guid id, long token, int percent, string? message, TimeSpan? lease, CancellationToken ct) =>
        Run(progress, "queue.progress", new HolderChange(tenant, id, token, percent, message, lease?.TotalSeconds), ct);

    public Task<TaskRecord> ExtendLeaseAsync(string tenant, Guid id, long token, TimeSpan lease, CancellationToken ct) =>
        Run(extensions, "queue.extend_lease", new HolderChange(tenant, id, token, LeaseSeconds: lease.TotalSeconds), ct);

    public Task<TaskRecord> CompleteAsync(string tenant, Guid id, long token, string? result, CancellationToken ct) =>
        Run(completions, "queue.complete", new HolderChange(tenant, id, token, Result: result), ct);

    private static Task<TaskRecord> Run(GroupCommit<HolderChange, TaskRecord> kind, string span, HolderChange change, CancellationToken ct) =>
        QueueTelemetry.Source.HasListeners()
            ? QueueTelemetry.TraceAsync(span, change.Tenant, change.Id, (kind, change, ct), static s => s.kind.RunAsync(s.change, s.ct), static t => t)
            : kind.RunAsync(change, ct);

    /// <summary>Completes many tasks (with whatever other completions are waiting); each is accepted or refused on its own.</summary>
    public async Task<IReadOnlyList<CompletionOutcome>> CompleteManyAsync(string tenant, IReadOnlyList<Completion> batch, CancellationToken ct)
    {
        var outcomes = await completions.RunManyAsync(batch.Select(c => new HolderChange(tenant, c.TaskId, c.FencingToken, Result: c.Result)).ToList(), ct);
        return batch.Select((c, i) => outcomes[i].Error switch
        {
            null => new CompletionOutcome(c.TaskId, null),
            LifelineException refusal => new CompletionOutcome(c.TaskId, refusal),
            // Not a refusal of this task (the store failed): the call fails, nothing is claimed about the others.
            var error => throw error,
        }).ToList();
    }

    /// <summary>
    /// Applies a group of guarded changes of one kind in one transaction: one statement changes every row
    /// whose tenant, token and state allow it; the others are read back and answered as a repeat of an applied
    /// call (same token, state <see cref="GuardedKind.IdempotentIn"/>: the task as it is) or refused. Ended tasks
    /// with dependents resolve them in the same transaction.
    /// </summary>
    private async Task<IReadOnlyList<GroupOutcome<TaskRecord>>> ApplyGuardedAsync(GuardedKind kind, IReadOnlyList<HolderChange> items, CancellationToken cancellationToken)
    {
        var applied = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var applied = await ApplyGuardedInAsync(kind, connection, tx, items, ct);
            await tx.CommitAsync(ct);
            return applied;
        }, cancellationToken);
        Committed(applied);
        return applied.Outcomes;
    }

    /// <summary>What a group of guarded changes did in its transaction: each call's answer, and what to do once it commits.</summary>
    internal sealed record AppliedChanges(IReadOnlyList<GroupOutcome<TaskRecord>> Outcomes, Action<QueueTelemetry, TaskRecord>? Count,
        IReadOnlyCollection<TaskRecord> Changed, Resolution? Resolution);

    /// <summary>
    /// The completion statement of a group of tasks, to run in the caller's transaction (in a batch with other statements):
    /// read its rows with <see cref="ReadChangedAsync"/>, then <see cref="CompletedInAsync"/> answers each call; the
    /// caller commits, then calls <see cref="Committed"/>.
    /// </summary>
    internal static NpgsqlBatchCommand CompleteStatement(IReadOnlyList<HolderChange> items) => GuardedStatement(Complete, items);

    /// <summary>SQLSTATE of <c>lifeline_require</c> (migration BatchRequirement): a statement of a batch stopped the batch.</summary>
    internal const string RequirementFailed = "LL001";

    // Every completion of the group was applied by this transaction (its task completed now, under its token), and none of
    // their tasks has dependents; otherwise the batch stops here, before its COMMIT.
    private static readonly string CompletedPlainlySql = $"""
        SELECT lifeline_require(count(*) = @calls, 'a completion of the group was refused or has dependents to resolve')
        FROM unnest(@tenants::text[], @ids::uuid[], @tokens::bigint[]) AS c(tenant_id, id, token)
        JOIN tasks t ON t.id = c.id
        WHERE t.tenant_id = c.tenant_id AND t.fencing_token = c.token AND t.status = {TaskState.Sql(TaskState.Completed)}
          AND t.completed_at = now() AND NOT t.has_dependents
        """;

    /// <summary>
    /// The statement to batch after <see cref="CompleteStatement"/> when the batch commits in the same round trip: it
    /// raises <see cref="RequirementFailed"/> — aborting the transaction, so PostgreSQL skips the rest of the batch and
    /// its COMMIT — unless every completion was applied and none of their tasks has dependents, which are the cases
    /// <see cref="CompletedInAsync"/> must read or resolve before the commit. Otherwise every call's answer is its
    /// changed row (<see cref="CompletedPlainly"/>).
    /// </summary>
    internal static NpgsqlBatchCommand CompletedPlainlyStatement(IReadOnlyList<HolderChange> items)
    {
        var command = new NpgsqlBatchCommand(CompletedPlainlySql);
        command.Parameters.AddWithValue("calls", (long)items.Count);
        command.Parameters.AddWithValue("tenants", items.Select(c => c.Tenant).ToArray());
        command.Parameters.AddWithValue("ids", items.Select(c => c.Id).ToArray());
        command.Parameters.AddWithValue("tokens", items.Select(c => c.Token).ToArray());
        return command;
    }

    /// <summary>The answers of a group of completions that <see cref="CompletedPlainlyStatement"/> let commit: each its task as changed.</summary>
    internal static AppliedChanges CompletedPlainly(IReadOnlyList<HolderChange> items, Dictionary<Guid, TaskRecord> changed) =>
        new(items.Select(c => GroupOutcome<TaskRecord>.Of(changed[c.Id])).ToList(), Complete.Count, changed.Values, null);

    /// <summary>Answers each completion of a group whose statement's rows are <paramref name="changed"/> (see <see cref="CompleteStatement"/>).</summary>
    internal static Task<AppliedChanges> CompletedInAsync(NpgsqlConnection connection, NpgsqlTransaction tx, IReadOnlyList<HolderChange> items,
        Dictionary<Guid, TaskRecord> changed, CancellationToken ct) => AnswerGuardedAsync(Complete, connection, tx, items, changed, ct);

    /// <summary>After the commit: counts the changes (once per task changed; a repeated call changed nothing) and wakes waiting leases.</summary>
    internal void Committed(AppliedChanges applied)
    {
        if (applied.Count is { } count)
        {
            foreach (var task in applied.Changed)
            {
                count(telemetry, task);
            }
        }
        NotifyReady(applied.Resolution);
    }

    private static async Task<AppliedChanges> ApplyGuardedInAsync(GuardedKind kind, NpgsqlConnection connection, NpgsqlTransaction tx,
        IReadOnlyList<HolderChange> items, CancellationToken ct)
    {
        Dictionary<Guid, TaskRecord> changed;
        await using (var batch = TaskLeaser.Batch(connection, tx, GuardedStatement(kind, items)))
        await using (var reader = await batch.ExecuteReaderAsync(ct))
        {
            changed = await ReadChangedAsync(reader, ct);
        }
        return await AnswerGuardedAsync(kind, connection, tx, items, changed, ct);
    }

    private static NpgsqlBatchCommand GuardedStatement(GuardedKind kind, IReadOnlyList<HolderChange> items)
    {
        var command = new NpgsqlBatchCommand(kind.Sql);
        command.Parameters.AddWithValue("tenants", items.Select(c => c.Tenant).ToArray());
        command.Parameters.AddWithValue("ids", items.Select(c => c.Id).ToArray());
        command.Parameters.AddWithValue("tokens", items.Select(c => c.Token).ToArray());
        command.Parameters.AddWithValue("percents", items.Select(c => c.Percent).ToArray());
        command.Parameters.Add(NullableArray("messages", NpgsqlDbType.Text, items.Select(c => c.Message)));
        command.Parameters.Add(NullableArray("lease_seconds", NpgsqlDbType.Double, items.Select(c => c.LeaseSeconds)));
        command.Parameters.Add(NullableArray("results", NpgsqlDbType.Text, items.Select(c => c.Result)));
        return command;
    }

    /// <summary>Reads the rows a guarded statement changed (the reader is on its result).</summary>
    internal static async Task<Dictionary<Guid, TaskRecord>> ReadChangedAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
        var changed = new Dictionary<Guid, TaskRecord>();
        while (await reader.ReadAsync(ct))
        {
            var record = TaskRecord.Read(reader);
            changed[record.Id] = record;
        }
        return changed;
    }

    private static async Task<AppliedChanges> AnswerGuardedAsync(GuardedKind kind, NpgsqlConnection connection, NpgsqlTransaction tx,
        IReadOnlyList<HolderChange> items, Dictionary<Guid, TaskRecord> changed, CancellationToken ct)
    {
        // Calls that changed nothing (or lost a race with a twin call in this group) are answered from the row as it is now.
        var current = await ReadManyAsync(connection, tx,
            items.Where(c => !Applied(changed, c)).Select(c => c.Id).Except(changed.Keys).ToArray(), ct);
        foreach (var (id, record) in changed)
        {
            current[id] = record;
        }
        var ended = changed.Values.Where(t => t.HasDependents && TaskState.IsEnded(t.Status)).Select(t => new EndedTask(t.Id, t.Status)).ToList();
        var resolution = ended.Count > 0 ? await DependencyResolver.ResolveAsync(connection, tx, ended, ct) : null;
        var outcomes = items.Select(c =>
        {
            if (Applied(changed, c))
            {
                return GroupOutcome<TaskRecord>.Of(changed[c.Id]);
            }
            var task = current.GetValueOrDefault(c.Id) is { } t && t.TenantId == c.Tenant ? t : null;
            return task is not null && kind.IdempotentIn is { } done && task.Status == done && task.FencingToken == c.Token
                ? GroupOutcome<TaskRecord>.Of(task)
                : GroupOutcome<TaskRecord>.Refused(Refusal(task, c.Id, c.Token, kind.Operation));
        }).ToList();
        return new AppliedChanges(outcomes, kind.Count, changed.Values, resolution);
    }

    /// <summary>Whether the statement changed this call's task under this call's token (a twin with another token did not).</summary>
    private static bool Applied(Dictionary<Guid, TaskRecord> changed, HolderChange c) =>
        changed.TryGetValue(c.Id, out var t) && t.TenantId == c.Tenant && t.FencingToken == c.Token;

    private static NpgsqlParameter NullableArray<T>(string name, NpgsqlDbType type, IEnumerable<T> values) =>
        new(name, NpgsqlDbType.Array | type) { Value = values.Select(v => (object?)v ?? DBNull.Value).ToArray() };

    private static async Task<Dictionary<Guid, TaskRecord>> ReadManyAsync(NpgsqlConnection connection, NpgsqlTransaction tx, Guid[] ids,
        CancellationToken ct, bool forUpdate = false)
    {
        var records = new Dictionary<Guid, TaskRecord>();
        if (ids.Length == 0)
        {
            return records;
        }
        // Rows are locked in id order (ids sorted by the caller), so concurrent groups cannot deadlock on each other.
        await using var read = new NpgsqlCommand(
            $"SELECT {TaskRecord.Columns} FROM tasks WHERE id = ANY(@ids)" + (forUpdate ? " ORDER BY id FOR UPDATE" : ""), connection, tx);
        read.Parameters.AddWithValue("ids", ids);
        await using var reader = await read.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var record = TaskRecord.Read(reader);
            records[record.Id] = record;
        }
        return records;
    }

    // ---- fail and release: decided in code on the locked rows ----

    /// <summary>One FailTask call, as the failure group takes it.</summary>
    private sealed record FailItem(string Tenant, Guid Id, long Token, FailureReport Failure);

    /// <summary>What a failure does to its task, decided in code on the locked row.</summary>
    private sealed record FailDecision(Guid Id, string Type, string Status, string EventType, StoredError Error, int RetryCount, DateTime NotBefore,
        string FromStatus, string Message, string Details);

    private static readonly string FailManySql = $"""
        WITH input AS (
            SELECT * FROM unnest(@ids::uuid[], @statuses::text[], @events::text[], @errors::text[], @retry_counts::int[],
                                 @not_befores::timestamptz[], @from_statuses::text[], @messages::text[], @details::text[])
                AS i(id, status, event_type, error, retry_count, not_before, from_status, message, details)
        ), changed AS (
            UPDATE tasks t
            SET status = i.status, error = i.error::jsonb, retry_count = i.retry_count, not_before = i.not_before,
                lease_expires_at = NULL, started_at = CASE WHEN i.status = {TaskState.Sql(TaskState.Pending)} THEN NULL ELSE t.started_at END,
                deadline_at = CASE WHEN i.status = {TaskState.Sql(TaskState.Pending)} THEN NULL ELSE t.deadline_at END,
                completed_at = CASE WHEN i.status = {TaskState.Sql(TaskState.Pending)} THEN NULL ELSE now() END,
                dead_lettered_at = CASE WHEN i.status = {TaskState.Sql(TaskState.DeadLettered)} THEN now() ELSE NULL END,
                updated_at = now()
            FROM input i
            WHERE t.id = i.id AND {TaskLifecycle.Fail.FromGuard("t.status")} AND {TaskLifecycle.Fail.ToGuard("i.status")}
            RETURNING {TaskRecord.ColumnsOf("t")}, i.event_type AS in_event, i.from_status AS in_from, i.message AS in_message,
                      i.details AS in_details
        ), history AS (
            {History.InsertFromExpression("changed", "in_event", "in_from", "status", "in_message", "in_details::jsonb")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>
    /// Records a failed attempt: retry after backoff when retryable with retries left, dead-letter when
    /// retryable but exhausted (MAX_RETRIES_EXCEEDED), end as failed when not retryable.
    /// </summary>
    public Task<(TaskRecord Task, bool WillRetry)> FailAsync(string tenant, Guid id, long token, FailureReport failure, CancellationToken ct) =>
        QueueTelemetry.Source.HasListeners()
            ? QueueTelemetry.TraceAsync("queue.fail", tenant, id, (failures, item: new FailItem(tenant, id, token, failure), ct),
                static s => s.failures.RunAsync(s.item, s.ct), static r => r.Task)
            : failures.RunAsync(new FailItem(tenant, id, token, failure), ct);

    private async Task<IReadOnlyList<GroupOutcome<(TaskRecord Task, bool WillRetry)>>> ApplyFailuresAsync(IReadOnlyList<FailItem> items, CancellationToken cancellationToken)
    {
        var (outcomes, resolution, decided) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var locked = await ReadManyAsync(connection, tx, items.Select(f => f.Id).Distinct().Order().ToArray(), ct, forUpdate: true);
            var outcomes = new GroupOutcome<(TaskRecord Task, bool WillRetry)>?[items.Count];
            var decisions = new List<FailDecision>();
            var decidedBy = new Dictionary<Guid, int>();
            for (var i = 0; i < items.Count; i++)
            {
                var item = items[i];
                var current = locked.GetValueOrDefault(item.Id) is { } t && t.TenantId == item.Tenant ? t : null;
                if (current is not null && current.FencingToken == item.Token && current.IsLeased && !decidedBy.ContainsKey(item.Id))
                {
                    decidedBy[item.Id] = i;
                    decisions.Add(Decide(current, item.Failure));
                }
                else if (current is null || decidedBy.ContainsKey(item.Id))
                {
                    // Unknown, another tenant's, or a twin of a call decided above (answered after the change).
                    outcomes[i] = current is null ? GroupOutcome<(TaskRecord, bool)>.Refused(Refusal(null, item.Id, item.Token, "failing")) : null;
                }
                else if (current.FencingToken == item.Token && await FailedWithAsync(connection, tx, item.Id, item.Token, ct))
                {
                    // A repeat of a failure this holder already reported (its answer was lost): the same answer, nothing changes.
                    outcomes[i] = GroupOutcome<(TaskRecord, bool)>.Of((current, current.Status == TaskState.Pending));
                }
                else
                {
                    outcomes[i] = GroupOutcome<(TaskRecord, bool)>.Refused(Refusal(current, item.Id, item.Token, "failing"));
                }
            }
            var changed = new Dictionary<Guid, TaskRecord>();
            if (decisions.Count > 0)
            {
                await using var command = new NpgsqlCommand(FailManySql, connection, tx);
                command.Parameters.AddWithValue("ids", decisions.Select(d => d.Id).ToArray());
                command.Parameters.AddWithValue("statuses", decisions.Select(d => d.Status).ToArray());
                command.Parameters.AddWithValue("events", decisions.Select(d => d.EventType).ToArray());
                command.Parameters.AddWithValue("errors", decisions.Select(d => d.Error.ToJson()).ToArray());
                command.Parameters.AddWithValue("retry_counts", decisions.Select(d => d.RetryCount).ToArray());
                command.Parameters.Add(new NpgsqlParameter("not_befores", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz)
                {
                    Value = decisions.Select(d => d.NotBefore).ToArray(),
                });
                command.Parameters.AddWithValue("from_statuses", decisions.Select(d => d.FromStatus).ToArray());
                command.Parameters.AddWithValue("messages", decisions.Select(d => d.Message).ToArray());
                command.Parameters.AddWithValue("details", decisions.Select(d => d.Details).ToArray());
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var record = TaskRecord.Read(reader);
                    changed[record.Id] = record;
                }
            }
            for (var i = 0; i < items.Count; i++)
            {
                if (outcomes[i] is null)
                {
                    // The decided call, or its twin: a twin under the same token is a repeat of the same report.
                    var record = changed[items[i].Id];
                    outcomes[i] = record.FencingToken == items[i].Token
                        ? GroupOutcome<(TaskRecord, bool)>.Of((record, record.Status == TaskState.Pending))
                        : GroupOutcome<(TaskRecord, bool)>.Refused(Refusal(record, items[i].Id, items[i].Token, "failing"));
                }
            }
            var ended = changed.Values.Where(t => t.HasDependents && TaskState.IsEnded(t.Status)).Select(t => new EndedTask(t.Id, t.Status)).ToList();
            var resolution = ended.Count > 0 ? await DependencyResolver.ResolveAsync(connection, tx, ended, ct) : null;
            await tx.CommitAsync(ct);
            return (outcomes.Select(o => o!.Value).ToList(), resolution, decisions);
        }, cancellationToken);
        // Committed: count each decided failure by what followed.
        foreach (var decision in decided)
        {
            telemetry.Failed(decision.Type, decision.Status == TaskState.Pending ? "retry_scheduled" : decision.Status);
        }
        NotifyReady(resolution);
        foreach (var tenant in outcomes.Where(o => o.Error is null && o.Value.WillRetry && o.Value.Task.NotBefore <= DateTime.UtcNow)
                     .Select(o => o.Value.Task.TenantId).Distinct())
        {
            readySignal.Notify(tenant);
        }
        return outcomes;
    }

    /// <summary>Retry after backoff, dead-letter when exhausted, or fail for good — with the history's details.</summary>
    private static FailDecision Decide(TaskRecord current, FailureReport failure)
    {
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
        return new FailDecision(current.Id, current.Type, status, eventType, error, retryCount, notBefore, current.Status, failure.Error.Message,
            System.Text.Json.JsonSerializer.Serialize(details));
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
            SET status = {TaskState.Sql(TaskState.Pending)}, lease_expires_at = NULL, started_at = NULL, deadline_at = NULL,
                not_before = now() + make_interval(secs => @delay_seconds), updated_at = now()
            WHERE t.id = @id AND {TaskLifecycle.Release.FromGuard("t.status")}
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "released", "@from_status", TaskState.Sql(TaskState.Pending), "@reason")}
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

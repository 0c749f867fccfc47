using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;
using Lifeline.Queue.Telemetry;

namespace Lifeline.Queue.Maintenance;

/// <summary>
/// The queue's own rescuer, so no task depends on another service to make progress:
/// <list type="bullet">
/// <item>a running attempt past its deadline (<c>timeout_seconds</c> after StartTask) ends as <c>timeout</c>;</item>
/// <item>an expired lease (the visibility timeout) returns the task to <c>pending</c> at once, counting
/// the attempt against <c>max_retries</c>; beyond it the task is dead-lettered (MAX_RETRIES_EXCEEDED).</item>
/// </list>
/// Every instance runs it; rows are claimed with SKIP LOCKED and guarded on state, so instances never
/// step on each other and each change happens once. Both rules are the queue's alone (<see cref="TaskLifecycle.TimeOut"/>,
/// <see cref="TaskLifecycle.LeaseExpiry"/>): recovery's RecoverTask(TIMEOUT) runs <see cref="TimeOutOneSql"/> from here, and
/// recovery's scanner leaves expired leases of live holders to this loop.
/// </summary>
public sealed partial class QueueMaintenance(NpgsqlDataSource dataSource, ReadySignal readySignal,
    IOptions<QueueOptions> options, QueueTelemetry telemetry, ILogger<QueueMaintenance> logger)
    : BackgroundLoop(logger, LoopBackoff.Between(options.Value.MaintenanceInterval, TimeSpan.FromSeconds(30)))
{
    // Ending an attempt as timed out: what it sets, and its history message (the pass and RecoverTask(TIMEOUT) alike).
    private static readonly string TimedOutSet = $"""
        status = {TaskState.Sql(TaskState.Timeout)}, lease_expires_at = NULL, completed_at = now(), updated_at = now(),
                error = jsonb_build_object('code', 'TASK_TIMEOUT', 'retryable', false, 'severity', 'high',
                    'message', 'the attempt ran longer than its timeout of ' || t.timeout_seconds || ' s')
        """;

    private const string TimedOutMessage = "'the attempt ran longer than its timeout'";

    private static readonly string TimeoutSql = $"""
        WITH overdue AS (
            SELECT id, status AS old_status FROM tasks
            WHERE {TaskLifecycle.TimeOut.FromGuard("status")} AND deadline_at < now()
            ORDER BY deadline_at LIMIT @batch FOR UPDATE SKIP LOCKED
        ), changed AS (
            UPDATE tasks t
            SET {TimedOutSet}
            FROM overdue o WHERE t.id = o.id
            RETURNING t.id, t.tenant_id, t.type, t.status, t.assigned_worker_id, t.fencing_token, t.has_dependents, o.old_status
        ), history AS (
            {History.InsertFrom("changed", "timed_out", "old_status", TaskState.Sql(TaskState.Timeout), TimedOutMessage)}
        )
        SELECT id, tenant_id, status, has_dependents, type FROM changed
        """;

    /// <summary>
    /// The same change for one task named by RecoverTask(TIMEOUT) under its fencing token (<see cref="Recovery.TimeoutEnforcement"/>
    /// decides whether it is past its timeout); @details are the history's details.
    /// </summary>
    internal static readonly string TimeOutOneSql = $"""
        WITH changed AS (
            UPDATE tasks t
            SET {TimedOutSet}
            WHERE t.id = @id AND t.tenant_id = @tenant AND t.fencing_token = @token AND {TaskLifecycle.TimeOut.FromGuard("t.status")}
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "timed_out", TaskState.Sql(TaskState.Running), TaskState.Sql(TaskState.Timeout), TimedOutMessage, "@details::jsonb")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    private static readonly string ExpirySql = $"""
        WITH expired AS (
            SELECT id, status AS old_status FROM tasks
            WHERE {TaskLifecycle.LeaseExpiry.FromGuard("status")} AND lease_expires_at < now()
            ORDER BY lease_expires_at LIMIT @batch FOR UPDATE SKIP LOCKED
        ), changed AS (
            UPDATE tasks t
            SET status = CASE WHEN t.retry_count < t.max_retries THEN {TaskState.Sql(TaskState.Pending)} ELSE {TaskState.Sql(TaskState.DeadLettered)} END,
                retry_count = CASE WHEN t.retry_count < t.max_retries THEN t.retry_count + 1 ELSE t.retry_count END,
                lease_expires_at = NULL, started_at = NULL, deadline_at = NULL, not_before = now(),
                completed_at = CASE WHEN t.retry_count < t.max_retries THEN NULL ELSE now() END,
                dead_lettered_at = CASE WHEN t.retry_count < t.max_retries THEN NULL ELSE now() END,
                error = CASE WHEN t.retry_count < t.max_retries
                    THEN jsonb_build_object('code', 'LEASE_EXPIRED', 'retryable', true, 'severity', 'medium',
                         'message', 'the lease of worker ' || t.assigned_worker_id || ' expired')
                    ELSE jsonb_build_object('code', 'MAX_RETRIES_EXCEEDED', 'retryable', false, 'severity', 'high',
                         'message', 'gave up after ' || (t.retry_count + 1) || ' attempts; the last lease (worker ' || t.assigned_worker_id || ') expired',
                         'details', jsonb_build_object('last_error_code', 'LEASE_EXPIRED')) END,
                updated_at = now()
            FROM expired e WHERE t.id = e.id
            RETURNING t.id, t.tenant_id, t.type, t.status, t.assigned_worker_id, t.fencing_token, t.has_dependents, e.old_status
        ), history AS (
            {History.InsertFromExpression("changed", $"CASE WHEN status = {TaskState.Sql(TaskState.Pending)} THEN 'lease_expired' ELSE 'dead_lettered' END",
                "old_status", "status", "'the lease expired'")}
        )
        SELECT id, tenant_id, status, has_dependents, type FROM changed
        """;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await RunOnceAsync(stoppingToken);
        return options.Value.MaintenanceInterval;
    }

    /// <summary>One pass: time out overdue attempts, then rescue expired leases. Returns how many tasks changed.</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var changed = 0;
        foreach (var sql in new[] { TimeoutSql, ExpirySql })
        {
            int count;
            do
            {
                count = await RunStepAsync(sql, cancellationToken);
                changed += count;
            }
            while (count == options.Value.MaintenanceBatchSize && !cancellationToken.IsCancellationRequested);
        }
        return changed;
    }

    private async Task<int> RunStepAsync(string sql, CancellationToken cancellationToken)
    {
        var (count, readyTenants, failures) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var ended = new List<EndedTask>();
            var ready = new HashSet<string>();
            var failed = new List<(string Type, string Outcome)>();
            var n = 0;
            await using (var command = new NpgsqlCommand(sql, connection, tx))
            {
                command.Parameters.AddWithValue("batch", options.Value.MaintenanceBatchSize);
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    n++;
                    var status = reader.GetString(2);
                    failed.Add((reader.GetString(4), status == TaskState.Pending ? "lease_expired" : status));
                    if (status == TaskState.Pending)
                    {
                        ready.Add(reader.GetString(1));
                    }
                    else if (reader.GetBoolean(3))
                    {
                        ended.Add(new EndedTask(reader.GetGuid(0), status));
                    }
                }
            }
            if (ended.Count > 0)
            {
                var resolution = await DependencyResolver.ResolveAsync(connection, tx, ended, ct);
                ready.UnionWith(resolution.TenantsWithReadyTasks);
            }
            await tx.CommitAsync(ct);
            return (n, ready, failed);
        }, cancellationToken);
        // Committed: an attempt that timed out or whose lease expired is a failed attempt.
        foreach (var (type, outcome) in failures)
        {
            telemetry.Failed(type, outcome);
        }
        foreach (var tenant in readyTenants)
        {
            readySignal.Notify(tenant);
        }
        if (count > 0)
        {
            LogChanged(logger, count);
        }
        return count;
    }

    [LoggerMessage(EventId = 1302, Level = LogLevel.Information, Message = "Queue maintenance moved {Count} tasks (timeouts or expired leases)")]
    private static partial void LogChanged(ILogger logger, int count);
}

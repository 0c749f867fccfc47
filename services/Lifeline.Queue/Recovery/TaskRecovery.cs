using System.Text.Json;
using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Npgsql;
using Lifeline.Queue.Telemetry;
using Lifeline.ServiceDefaults.Telemetry;
using NpgsqlTypes;

namespace Lifeline.Queue.Recovery;

/// <summary>What RecoverTask does with a task.</summary>
public enum RecoveryKind
{
    /// <summary>Back to pending (or dead-lettered when a counted retry is not left).</summary>
    Requeue,

    /// <summary>Straight to the dead letters.</summary>
    DeadLetter,
}

/// <summary>What RecoverTask did.</summary>
public enum RecoveryOutcome
{
    Requeued,
    DeadLettered,
    AlreadyRecovered,
}

/// <summary>A validated RecoverTask request.</summary>
public sealed record RecoveryRequest(Guid TaskId, long FencingToken, RecoveryKind Action, StoredError Reason, Guid? ResumeCheckpointId, bool CountRetry);

/// <summary>
/// Takes a task away from a lease that ended without an outcome (its worker died), or out of <c>timeout</c>,
/// for the recovery service. One transaction: the row is locked, the fencing token and state are checked,
/// the <see cref="LivenessFence"/> decides whether a current lease may be taken, and one guarded statement
/// (re-checking token and state) changes the task and writes its <c>recovered</c> event. Because the row is
/// locked throughout, a concurrent Complete/Fail by the holder or the maintenance loop's lease expiry
/// either happens entirely before (and the recovery is refused) or entirely after (and is refused itself).
/// The recovered token is stored on the task, so a repeat of a successful call changes nothing.
/// The fencing token is not raised here: the next lease raises it, as after an expired lease, and until
/// then the old holder's calls find the task no longer leased.
/// </summary>
public sealed partial class TaskRecovery(NpgsqlDataSource dataSource, ReadySignal readySignal, LivenessFence fence, QueueTelemetry telemetry,
    ILogger<TaskRecovery> logger)
{
    // clock_timestamp(), not now(): the lock may have been waited for, and an expiry meanwhile counts.
    /// <summary>
    /// The row every recovery decides on, locked until the transaction ends, with the two clock facts read in the
    /// same statement (clock_timestamp(): time spent waiting for the lock counts): is the lease current, is the
    /// attempt past its own timeout.
    /// </summary>
    private static readonly string LockSql = $"""
        SELECT {TaskRecord.Columns},
               COALESCE(lease_expires_at > clock_timestamp(), false) AS lease_current,
               COALESCE(LEAST(deadline_at, started_at + make_interval(secs => timeout_seconds)) < clock_timestamp(), false) AS past_timeout
        FROM tasks WHERE id = @id AND tenant_id = @tenant FOR UPDATE
        """;

    internal sealed record LockedTask(TaskRecord Task, bool LeaseCurrent, bool PastTimeout);

    /// <summary>The task locked for a recovery decision; NOT_FOUND when this tenant has no such task.</summary>
    internal static async Task<LockedTask> LockAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, Guid id, CancellationToken ct)
    {
        await using var read = new NpgsqlCommand(LockSql, connection, tx);
        read.Parameters.AddWithValue("id", id);
        read.Parameters.AddWithValue("tenant", tenant);
        await using var reader = await read.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new LockedTask(TaskRecord.Read(reader), reader.GetBoolean(TaskRecord.ColumnCount), reader.GetBoolean(TaskRecord.ColumnCount + 1))
            : throw new NotFoundException("task", id.ToString());
    }

    // One statement for both transitions RecoverTask makes: a lost holder's lease, a timed-out task's retry.
    private static readonly TaskTransition[] Recoverable = [TaskLifecycle.RecoverLostHolder, TaskLifecycle.RetryTimedOut];

    private static readonly string RecoverSql = $"""
        WITH changed AS (
            UPDATE tasks t
            SET status = @status, error = @error::jsonb, retry_count = @retry_count, not_before = now(), lease_expires_at = NULL,
                started_at = CASE WHEN @status = {TaskState.Sql(TaskState.Pending)} THEN NULL ELSE t.started_at END,
                deadline_at = CASE WHEN @status = {TaskState.Sql(TaskState.Pending)} THEN NULL ELSE t.deadline_at END,
                completed_at = CASE WHEN @status = {TaskState.Sql(TaskState.Pending)} THEN NULL ELSE now() END,
                dead_lettered_at = CASE WHEN @status = {TaskState.Sql(TaskState.DeadLettered)} THEN now() ELSE NULL END,
                resume_checkpoint_id = @checkpoint, recovery_count = t.recovery_count + 1, recovered_token = t.fencing_token,
                updated_at = now()
            WHERE t.id = @id AND t.tenant_id = @tenant AND t.fencing_token = @token AND t.status = @from_status
              AND {TaskLifecycle.FromGuard("t.status", Recoverable)} AND {TaskLifecycle.ToGuard("@status", Recoverable)}
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "recovered", "@from_status", "status", "@message", "@details::jsonb")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>Recovers one task (see the class); its span links to the task's enqueue.</summary>
    public async Task<(TaskRecord Task, RecoveryOutcome Outcome)> RecoverAsync(string tenant, RecoveryRequest request, CancellationToken cancellationToken)
    {
        var result = await QueueTelemetry.TraceAsync("queue.recover", tenant, request.TaskId, (self: this, tenant, request, cancellationToken),
            static s => s.self.RecoverTracedAsync(s.tenant, s.request, s.cancellationToken), static r => r.Task);
        if (result.Outcome != RecoveryOutcome.AlreadyRecovered)
        {
            telemetry.Recovered(result.Task);
        }
        return result;
    }

    private async Task<(TaskRecord Task, RecoveryOutcome Outcome)> RecoverTracedAsync(string tenant, RecoveryRequest request, CancellationToken cancellationToken)
    {
        var (task, outcome, resolution) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var (current, leaseCurrent, _) = await LockAsync(connection, tx, tenant, request.TaskId, ct);
            if (current.RecoveredToken == request.FencingToken)
            {
                return (current, RecoveryOutcome.AlreadyRecovered, (Resolution?)null);
            }
            if (current.FencingToken != request.FencingToken)
            {
                throw new StaleFencingTokenException(current.Id, request.FencingToken, current.FencingToken);
            }
            if (!Recoverable.Any(t => t.From.Contains(current.Status)))
            {
                throw new InvalidTaskStateException(current.Id, current.Status, "recovery");
            }
            var basis = current.IsLeased ? await fence.EnsureHolderIsGoneAsync(tenant, current, leaseCurrent) : "timed_out";

            var (status, error, retryCount) = Decide(current, request);
            var details = new Dictionary<string, object>
            {
                ["action"] = request.Action == RecoveryKind.DeadLetter ? "dead_letter" : "requeue",
                ["outcome"] = status == TaskState.Pending ? "requeued" : "dead_lettered",
                ["error_code"] = request.Reason.Code,
                ["basis"] = basis,
                ["count_retry"] = request.CountRetry,
                ["retry_count"] = retryCount,
            };
            if (request.ResumeCheckpointId is { } checkpoint)
            {
                details["resume_checkpoint_id"] = checkpoint.ToString();
            }
            if (current.IsLeased)
            {
                // How long the lost attempt ran; reported to the registry with the worker's failure.
                details["duration_ms"] = (long)Math.Max(0, (DateTime.UtcNow - (current.StartedAt ?? current.AssignedAt ?? DateTime.UtcNow)).TotalMilliseconds);
            }
            TaskRecord? changed = null;
            await using (var command = new NpgsqlCommand(RecoverSql, connection, tx))
            {
                command.Parameters.AddWithValue("id", request.TaskId);
                command.Parameters.AddWithValue("tenant", tenant);
                command.Parameters.AddWithValue("token", request.FencingToken);
                command.Parameters.AddWithValue("from_status", current.Status);
                command.Parameters.AddWithValue("status", status);
                command.Parameters.AddWithValue("error", error.ToJson());
                command.Parameters.AddWithValue("retry_count", retryCount);
                command.Parameters.Add(new NpgsqlParameter("checkpoint", NpgsqlDbType.Uuid) { Value = request.ResumeCheckpointId is { } c ? c : DBNull.Value });
                command.Parameters.AddWithValue("message", string.IsNullOrEmpty(request.Reason.Message) ? request.Reason.Code : request.Reason.Message);
                command.Parameters.AddWithValue("details", JsonSerializer.Serialize(details));
                await using var reader = await command.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    changed = TaskRecord.Read(reader);
                }
            }
            if (changed is null)
            {
                // Cannot happen while the row is locked; if it ever does, nothing was written and a retry decides afresh.
                throw new ConcurrencyConflictException($"Task {request.TaskId} changed while it was being recovered; retry.", TimeSpan.FromMilliseconds(100));
            }
            Resolution? resolution = null;
            if (changed.HasDependents && changed.Status == TaskState.DeadLettered)
            {
                resolution = await DependencyResolver.ResolveAsync(connection, tx, [new EndedTask(changed.Id, changed.Status)], ct);
            }
            await tx.CommitAsync(ct);
            using var scope = logger.BeginScope(new TaskScope(tenant, changed.Id, current.AssignedWorkerId));
            LogRecovered(logger, changed.Id, current.Status, changed.Status, current.AssignedWorkerId, request.FencingToken, request.Reason.Code, basis);
            return (changed, changed.Status == TaskState.Pending ? RecoveryOutcome.Requeued : RecoveryOutcome.DeadLettered, resolution);
        }, cancellationToken);
        if (outcome == RecoveryOutcome.Requeued)
        {
            readySignal.Notify(tenant);
        }
        foreach (var ready in resolution?.TenantsWithReadyTasks ?? [])
        {
            readySignal.Notify(ready);
        }
        return (task, outcome);
    }

    /// <summary>The new state, stored error and retry count: requeue (using a retry when asked), or dead-letter.</summary>
    private static (string Status, StoredError Error, int RetryCount) Decide(TaskRecord current, RecoveryRequest request)
    {
        var reason = request.Reason;
        if (request.Action == RecoveryKind.DeadLetter)
        {
            return (TaskState.DeadLettered, reason, current.RetryCount);
        }
        if (!request.CountRetry)
        {
            return (TaskState.Pending, reason, current.RetryCount);
        }
        if (current.RetryCount < current.MaxRetries)
        {
            return (TaskState.Pending, reason, current.RetryCount + 1);
        }
        var exhausted = new StoredError("MAX_RETRIES_EXCEEDED",
            $"Gave up after {current.RetryCount + 1} attempts; recovered with {reason.Code}: {reason.Message}", false, reason.Severity,
            new Dictionary<string, string>(reason.Details ?? []) { ["last_error_code"] = reason.Code });
        return (TaskState.DeadLettered, exhausted, current.RetryCount);
    }

    [LoggerMessage(EventId = 1701, Level = LogLevel.Information,
        Message = "Recovered task {TaskId} from {FromStatus} to {ToStatus} (worker {WorkerId}, token {FencingToken}, reason {ReasonCode}, {Basis})")]
    private static partial void LogRecovered(ILogger logger, Guid taskId, string fromStatus, string toStatus, string? workerId, long fencingToken,
        string reasonCode, string basis);
}

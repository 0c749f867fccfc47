using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Leadership;
using Npgsql;

namespace Lifeline.Recovery.InFlight;

/// <summary>A recovery action as recorded.</summary>
public sealed record ActionRecord(
    Guid Id, string TenantId, Guid TaskId, string TaskType, string WorkflowId, string PreviousStatus, string NewStatus,
    ActionType Action, RecoveryTrigger Trigger, string Reason, string WorkerId, Guid? CheckpointId, long FencingToken,
    DateTime DetectedAt, DateTime RecoveredAt, bool Succeeded, string? Error, long LeaderToken);

/// <summary>What ListRecoveryActions filters by.</summary>
/// <param name="Tenant">Only this tenant's actions (a caller whose role does not span tenants); null for the whole suite.</param>
public sealed record ActionFilter(
    string? Tenant, Guid? TaskId, string? WorkerId, ActionType? Action, DateTime? Since, int PageSize, (DateTime At, Guid Id)? Before);

/// <summary>Today's figures over the recorded actions.</summary>
public sealed record ActionFigures(long Recovered, long Failed, long Total, TimeSpan P50, TimeSpan P95, TimeSpan P99);

/// <summary>
/// The record of what recovery did (<c>recovery_actions</c>). Writes are fenced by the leader's term
/// (<see cref="LeaderTerm.Fence"/>: only a term that still runs is recorded) and idempotent per lease: one successful action per
/// (task, fencing token), however often a scan or a lost event sees the task.
/// </summary>
public sealed class ActionLog(NpgsqlDataSource dataSource)
{
    private const string Columns =
        "id, tenant_id, task_id, task_type, workflow_id, previous_status, new_status, action, trigger, reason, worker_id, checkpoint_id, " +
        "fencing_token, detected_at, recovered_at, succeeded, error, leader_token";

    /// <summary>Records an action taken in <paramref name="term"/>; false when it was recorded before (same lease) or the term has ended.</summary>
    public async Task<bool> RecordAsync(ActionRecord a, LeaderTerm term, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            $"""
            INSERT INTO recovery_actions ({Columns})
            SELECT @id, @tenant, @task, @type, @workflow, @prev, @next, @action, @trigger, @reason, @worker, @checkpoint,
                   @token, @detected, @recovered, @ok, @error, @leader
            WHERE {LeaderTerm.Fence}
            ON CONFLICT (tenant_id, task_id, fencing_token) WHERE succeeded DO NOTHING
            """);
        var p = command.Parameters;
        p.AddWithValue("id", a.Id);
        p.AddWithValue("tenant", a.TenantId);
        p.AddWithValue("task", a.TaskId);
        p.AddWithValue("type", a.TaskType);
        p.AddWithValue("workflow", a.WorkflowId);
        p.AddWithValue("prev", a.PreviousStatus);
        p.AddWithValue("next", a.NewStatus);
        p.AddWithValue("action", (int)a.Action);
        p.AddWithValue("trigger", (int)a.Trigger);
        p.AddWithValue("reason", a.Reason);
        p.AddWithValue("worker", a.WorkerId);
        p.AddWithValue("checkpoint", (object?)a.CheckpointId ?? DBNull.Value);
        p.AddWithValue("token", a.FencingToken);
        p.AddWithValue("detected", a.DetectedAt);
        p.AddWithValue("recovered", a.RecoveredAt);
        p.AddWithValue("ok", a.Succeeded);
        p.AddWithValue("error", (object?)a.Error ?? DBNull.Value);
        p.AddWithValue("leader", term.Term);
        term.AddFenceParameters(p);
        return await command.ExecuteNonQueryAsync(ct) == 1;
    }

    /// <summary>Actions newest first; one tenant's through <c>ix_recovery_actions_tenant</c>, the suite's through <c>ix_recovery_actions_time</c>.</summary>
    public async Task<List<ActionRecord>> ListAsync(ActionFilter filter, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            $"""
            SELECT {Columns} FROM recovery_actions
            WHERE (@tenant::text IS NULL OR tenant_id = @tenant)
              AND (@task::uuid IS NULL OR task_id = @task)
              AND (@worker::text IS NULL OR worker_id = @worker)
              AND (@action::int IS NULL OR action = @action)
              AND (@since::timestamptz IS NULL OR recovered_at >= @since)
              AND (@before_at::timestamptz IS NULL OR (recovered_at, id) < (@before_at, @before_id))
            ORDER BY recovered_at DESC, id DESC
            LIMIT @limit
            """);
        var p = command.Parameters;
        p.AddWithValue("tenant", (object?)filter.Tenant ?? DBNull.Value);
        p.AddWithValue("task", (object?)filter.TaskId ?? DBNull.Value);
        p.AddWithValue("worker", (object?)filter.WorkerId ?? DBNull.Value);
        p.AddWithValue("action", filter.Action is { } action ? (int)action : DBNull.Value);
        p.AddWithValue("since", (object?)filter.Since ?? DBNull.Value);
        p.AddWithValue("before_at", filter.Before is { } b ? b.At : DBNull.Value);
        p.AddWithValue("before_id", filter.Before is { } c ? c.Id : Guid.Empty);
        p.AddWithValue("limit", filter.PageSize);
        var result = new List<ActionRecord>();
        await using var r = await command.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            result.Add(new ActionRecord(r.GetGuid(0), r.GetString(1), r.GetGuid(2), r.GetString(3), r.GetString(4), r.GetString(5), r.GetString(6),
                (ActionType)r.GetInt32(7), (RecoveryTrigger)r.GetInt32(8), r.GetString(9), r.GetString(10), r.IsDBNull(11) ? null : r.GetGuid(11),
                r.GetInt64(12), r.GetDateTime(13), r.GetDateTime(14), r.GetBoolean(15), r.IsDBNull(16) ? null : r.GetString(16), r.GetInt64(17)));
        }
        return result;
    }

    /// <summary>
    /// Recovered (successful, not dead-lettered), failed (failed or dead-lettered) and time-to-recovery percentiles since
    /// midnight UTC, over <paramref name="tenant"/>'s actions, or the whole suite's when null.
    /// </summary>
    public async Task<ActionFigures> TodayAsync(string? tenant, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT count(*) FILTER (WHERE succeeded AND action <> 4),
                   count(*) FILTER (WHERE NOT succeeded OR action = 4),
                   count(*),
                   coalesce(percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM recovered_at - detected_at)) FILTER (WHERE succeeded), 0),
                   coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM recovered_at - detected_at)) FILTER (WHERE succeeded), 0),
                   coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM recovered_at - detected_at)) FILTER (WHERE succeeded), 0)
            FROM recovery_actions
            WHERE recovered_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
              AND (@tenant::text IS NULL OR tenant_id = @tenant)
            """);
        command.Parameters.AddWithValue("tenant", (object?)tenant ?? DBNull.Value);
        await using var r = await command.ExecuteReaderAsync(ct);
        await r.ReadAsync(ct);
        return new ActionFigures(r.GetInt64(0), r.GetInt64(1), r.GetInt64(2),
            TimeSpan.FromSeconds(r.GetDouble(3)), TimeSpan.FromSeconds(r.GetDouble(4)), TimeSpan.FromSeconds(r.GetDouble(5)));
    }
}

using System.Diagnostics;
using Lifeline.Queue.Data;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Queue.Leasing;

/// <summary>A validated LeaseTasks request.</summary>
public sealed record LeaseRequest(string WorkerId, string[] TaskTypes, int MaxTasks, TimeSpan LeaseDuration, TimeSpan Wait, bool Start = false);

/// <summary>
/// Hands ready tasks to workers. One statement picks and leases them: for each requested type it walks
/// <c>ix_tasks_ready</c> in dequeue order (priority desc, created_at, id) with
/// <c>FOR UPDATE SKIP LOCKED</c>, so any number of workers and service instances lease at once and no
/// task is ever leased twice; each leased task's fencing token grows by one.
/// </summary>
public sealed class TaskLeaser(NpgsqlDataSource dataSource, ReadySignal readySignal, WorkerGate gate, IOptions<QueueOptions> options)
{
    private static readonly string LeaseSql = $"""
        WITH locked AS (
            SELECT c.id, c.priority, c.created_at
            FROM unnest(@types::text[]) AS wanted(type)
            CROSS JOIN LATERAL (
                SELECT t.id, t.priority, t.created_at
                FROM tasks t
                WHERE t.tenant_id = @tenant AND t.type = wanted.type AND t.status = 'pending'
                  AND t.unmet_dependencies = 0 AND t.not_before <= now()
                ORDER BY t.priority DESC, t.created_at, t.id
                LIMIT @max
                FOR UPDATE SKIP LOCKED
            ) c
        ), picked AS (
            SELECT id FROM locked ORDER BY priority DESC, created_at, id LIMIT @max
        ), leased AS (
            UPDATE tasks t
            SET status = CASE WHEN @start THEN 'running' ELSE 'assigned' END, assigned_worker_id = @worker,
                fencing_token = t.fencing_token + 1, lease_seconds = @lease_seconds,
                lease_expires_at = now() + make_interval(secs => @lease_seconds), assigned_at = now(),
                started_at = CASE WHEN @start THEN now() END,
                deadline_at = CASE WHEN @start THEN now() + make_interval(secs => t.timeout_seconds) END,
                progress_percent = 0, progress_message = NULL, updated_at = now()
            FROM picked
            WHERE t.id = picked.id
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("leased", "leased", "'pending'", "status",
                details: "jsonb_build_object('wait_ms', floor(extract(epoch FROM now() - not_before) * 1000)::bigint, 'lease_seconds', @lease_seconds, 'started', @start)")}
        )
        SELECT {TaskRecord.Columns} FROM leased ORDER BY priority DESC, created_at, id
        """;

    public async Task<IReadOnlyList<TaskRecord>> LeaseAsync(string tenant, LeaseRequest request, CancellationToken cancellationToken)
    {
        request = request with { TaskTypes = await gate.AdmitAsync(tenant, request) };
        var deadline = Stopwatch.GetTimestamp() + (long)(request.Wait.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var leased = await SerializationRetry.RunAsync(ct => TryLeaseAsync(tenant, request, ct), cancellationToken);
            var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
            if (leased.Count > 0 || remaining <= TimeSpan.Zero)
            {
                return leased;
            }
            var nap = remaining < options.Value.LeasePollInterval ? remaining : options.Value.LeasePollInterval;
            await readySignal.WaitAsync(tenant, nap, cancellationToken);
        }
    }

    private async Task<IReadOnlyList<TaskRecord>> TryLeaseAsync(string tenant, LeaseRequest request, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(LeaseSql);
        command.Parameters.AddWithValue("tenant", tenant);
        command.Parameters.AddWithValue("types", request.TaskTypes);
        command.Parameters.AddWithValue("max", request.MaxTasks);
        command.Parameters.AddWithValue("worker", request.WorkerId);
        command.Parameters.AddWithValue("lease_seconds", request.LeaseDuration.TotalSeconds);
        command.Parameters.AddWithValue("start", request.Start);
        await using var reader = await command.ExecuteReaderAsync(ct);
        var tasks = new List<TaskRecord>(request.MaxTasks);
        while (await reader.ReadAsync(ct))
        {
            tasks.Add(TaskRecord.Read(reader));
        }
        return tasks;
    }
}

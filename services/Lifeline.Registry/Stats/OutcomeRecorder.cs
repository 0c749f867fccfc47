using Lifeline.Registry.Breakers;
using Lifeline.Registry.Options;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Registry.Stats;

/// <summary>A validated task outcome.</summary>
public sealed record Outcome(string OutcomeId, Guid WorkerId, Guid TaskId, string TaskType, bool Success, long DurationMs, string? ErrorCode, DateTime OccurredAt);

/// <summary>A worker's statistics row.</summary>
public sealed record StatsRecord(Guid WorkerId, string WorkerName, long Total, long Succeeded, long Failed, long TotalDurationMs,
    int ConsecutiveFailures, DateTime? LastOutcomeAt)
{
    public double SuccessRate => Total == 0 ? 0 : (double)Succeeded / Total;
    public TimeSpan MeanDuration => Total == 0 ? TimeSpan.Zero : TimeSpan.FromMilliseconds((double)TotalDurationMs / Total);
}

/// <summary>
/// Records task outcomes (idempotent by outcome id), keeps per-worker statistics as running aggregates
/// in the same transaction, and drives each worker's circuit breaker with the new outcomes.
/// </summary>
public sealed class OutcomeRecorder(NpgsqlDataSource dataSource, BreakerStore breakers, IOptions<RegistryOptions> options)
{
    // New outcomes only (ON CONFLICT DO NOTHING), of workers this tenant knows; aggregates per worker.
    private const string RecordSql = """
        WITH input AS (
            SELECT * FROM unnest(@ids::text[], @workers::uuid[], @tasks::uuid[], @types::text[], @success::bool[],
                                 @durations::bigint[], @codes::text[], @at::timestamptz[])
                AS i(outcome_id, worker_id, task_id, task_type, success, duration_ms, error_code, occurred_at)
        ), inserted AS (
            INSERT INTO task_outcomes (tenant_id, outcome_id, worker_id, task_id, task_type, success, duration_ms, error_code, occurred_at, recorded_at)
            SELECT @tenant, i.outcome_id, i.worker_id, i.task_id, i.task_type, i.success, i.duration_ms, i.error_code, i.occurred_at, now()
            FROM input i JOIN workers w ON w.id = i.worker_id AND w.tenant_id = @tenant
            ON CONFLICT (tenant_id, outcome_id) DO NOTHING
            RETURNING worker_id, success, duration_ms, occurred_at
        ), per_worker AS (
            SELECT worker_id, count(*) AS total, count(*) FILTER (WHERE success) AS succeeded, sum(duration_ms) AS duration_ms,
                   max(occurred_at) AS last_at,
                   -- failures after the last success of this batch (all of them when it has no success)
                   count(*) FILTER (WHERE NOT success AND occurred_at > COALESCE(
                       (SELECT max(x.occurred_at) FROM inserted x WHERE x.worker_id = inserted.worker_id AND x.success), '-infinity')) AS trailing_failures,
                   bool_or(success) AS any_success
            FROM inserted GROUP BY worker_id
        ), upserted AS (
            INSERT INTO worker_stats AS s (worker_id, tenant_id, total, succeeded, failed, total_duration_ms, consecutive_failures, last_outcome_at, updated_at)
            SELECT worker_id, @tenant, total, succeeded, total - succeeded, duration_ms, trailing_failures, last_at, now() FROM per_worker
            ON CONFLICT (worker_id) DO UPDATE SET
                total = s.total + EXCLUDED.total, succeeded = s.succeeded + EXCLUDED.succeeded, failed = s.failed + EXCLUDED.failed,
                total_duration_ms = s.total_duration_ms + EXCLUDED.total_duration_ms,
                consecutive_failures = CASE WHEN (SELECT any_success FROM per_worker p WHERE p.worker_id = s.worker_id)
                    THEN EXCLUDED.consecutive_failures ELSE s.consecutive_failures + EXCLUDED.consecutive_failures END,
                last_outcome_at = GREATEST(s.last_outcome_at, EXCLUDED.last_outcome_at), updated_at = now()
            RETURNING worker_id
        )
        SELECT i.worker_id, i.success, i.occurred_at FROM inserted i ORDER BY i.worker_id, i.occurred_at
        """;

    /// <summary>Records outcomes; returns how many were new and how many named workers this tenant does not have.</summary>
    public async Task<(int Recorded, int UnknownWorkers)> RecordAsync(string tenant, IReadOnlyList<Outcome> outcomes, CancellationToken cancellationToken)
    {
        var applied = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            await using var command = new NpgsqlCommand(RecordSql, connection, tx);
            command.Parameters.AddWithValue("tenant", tenant);
            command.Parameters.AddWithValue("ids", outcomes.Select(o => o.OutcomeId).ToArray());
            command.Parameters.AddWithValue("workers", outcomes.Select(o => o.WorkerId).ToArray());
            command.Parameters.AddWithValue("tasks", outcomes.Select(o => o.TaskId).ToArray());
            command.Parameters.AddWithValue("types", outcomes.Select(o => o.TaskType).ToArray());
            command.Parameters.AddWithValue("success", outcomes.Select(o => o.Success).ToArray());
            command.Parameters.AddWithValue("durations", outcomes.Select(o => o.DurationMs).ToArray());
            command.Parameters.Add(new NpgsqlParameter("codes", NpgsqlDbType.Array | NpgsqlDbType.Text)
            {
                Value = outcomes.Select(o => (object?)o.ErrorCode ?? DBNull.Value).ToArray(),
            });
            command.Parameters.Add(new NpgsqlParameter("at", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = outcomes.Select(o => o.OccurredAt).ToArray() });
            var rows = new List<(Guid Worker, bool Success)>();
            await using (var reader = await command.ExecuteReaderAsync(ct))
            {
                while (await reader.ReadAsync(ct))
                {
                    rows.Add((reader.GetGuid(0), reader.GetBoolean(1)));
                }
            }
            await tx.CommitAsync(ct);
            return rows;
        }, cancellationToken);

        // Breakers follow the new outcomes, in order, per worker (optimistic, retried on conflict).
        foreach (var group in applied.GroupBy(r => r.Worker))
        {
            await breakers.ChangeAsync(tenant, group.Key, (state, now) =>
                group.Aggregate(state, (s, o) => CircuitBreakerPolicy.Apply(s, o.Success, now, options.Value.BreakerFailureThreshold, options.Value.BreakerOpenDuration)),
                cancellationToken);
        }
        var known = await CountKnownAsync(tenant, outcomes.Select(o => o.WorkerId).Distinct().ToArray(), cancellationToken);
        return (applied.Count, outcomes.Count(o => !known.Contains(o.WorkerId)));
    }

    private async Task<HashSet<Guid>> CountKnownAsync(string tenant, Guid[] workers, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT id FROM workers WHERE tenant_id = @tenant AND id = ANY(@ids)");
        command.Parameters.AddWithValue("tenant", tenant);
        command.Parameters.AddWithValue("ids", workers);
        var known = new HashSet<Guid>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            known.Add(reader.GetGuid(0));
        }
        return known;
    }

    private const string StatsColumns = """
        w.id, w.name, COALESCE(s.total, 0), COALESCE(s.succeeded, 0), COALESCE(s.failed, 0), COALESCE(s.total_duration_ms, 0),
        COALESCE(s.consecutive_failures, 0), s.last_outcome_at
        """;

    private static StatsRecord ReadStats(NpgsqlDataReader r) => new(
        r.GetGuid(0), r.GetString(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4), r.GetInt64(5), r.GetInt32(6), r.IsDBNull(7) ? null : r.GetDateTime(7));

    public async Task<StatsRecord?> GetAsync(string tenant, Guid workerId, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"""
            SELECT {StatsColumns} FROM workers w LEFT JOIN worker_stats s ON s.worker_id = w.id
            WHERE w.id = @id AND w.tenant_id = @tenant
            """);
        command.Parameters.AddWithValue("id", workerId);
        command.Parameters.AddWithValue("tenant", tenant);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? ReadStats(reader) : null;
    }

    /// <summary>Top performers (highest success rate, then most outcomes), or underperformers below a rate.</summary>
    public async Task<IReadOnlyList<StatsRecord>> ListAsync(string tenant, bool underperforming, int minOutcomes, double maxRate, int limit, CancellationToken ct)
    {
        var sql = underperforming
            ? $"""
               SELECT {StatsColumns} FROM worker_stats s JOIN workers w ON w.id = s.worker_id
               WHERE s.tenant_id = @tenant AND s.total >= @min AND s.succeeded::float8 / s.total < @max_rate
               ORDER BY s.succeeded::float8 / s.total, s.total DESC LIMIT @limit
               """
            : $"""
               SELECT {StatsColumns} FROM worker_stats s JOIN workers w ON w.id = s.worker_id
               WHERE s.tenant_id = @tenant AND s.total > 0
               ORDER BY s.succeeded::float8 / s.total DESC, s.total DESC, w.name LIMIT @limit
               """;
        await using var command = dataSource.CreateCommand(sql);
        command.Parameters.AddWithValue("tenant", tenant);
        command.Parameters.AddWithValue("min", (long)minOutcomes);
        command.Parameters.AddWithValue("max_rate", maxRate);
        command.Parameters.AddWithValue("limit", limit);
        var list = new List<StatsRecord>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            list.Add(ReadStats(reader));
        }
        return list;
    }

    /// <summary>Rebuilds statistics from the recorded outcomes (one worker, or every worker of the tenant).</summary>
    public async Task<int> RecalculateAsync(string tenant, Guid? workerId, CancellationToken cancellationToken) =>
        await SerializationRetry.RunAsync(async ct =>
        {
            await using var command = dataSource.CreateCommand("""
                WITH target AS (
                    SELECT id FROM workers WHERE tenant_id = @tenant AND (@worker::uuid IS NULL OR id = @worker)
                ), rebuilt AS (
                    SELECT t.id AS worker_id,
                           count(o.outcome_id) AS total,
                           count(o.outcome_id) FILTER (WHERE o.success) AS succeeded,
                           COALESCE(sum(o.duration_ms), 0) AS duration_ms,
                           max(o.occurred_at) AS last_at,
                           count(o.outcome_id) FILTER (WHERE NOT o.success AND o.occurred_at > COALESCE(
                               (SELECT max(x.occurred_at) FROM task_outcomes x WHERE x.worker_id = t.id AND x.success), '-infinity')) AS trailing_failures
                    FROM target t LEFT JOIN task_outcomes o ON o.worker_id = t.id
                    GROUP BY t.id
                )
                INSERT INTO worker_stats AS s (worker_id, tenant_id, total, succeeded, failed, total_duration_ms, consecutive_failures, last_outcome_at, updated_at)
                SELECT worker_id, @tenant, total, succeeded, total - succeeded, duration_ms, trailing_failures, last_at, now() FROM rebuilt
                ON CONFLICT (worker_id) DO UPDATE SET total = EXCLUDED.total, succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed,
                    total_duration_ms = EXCLUDED.total_duration_ms, consecutive_failures = EXCLUDED.consecutive_failures,
                    last_outcome_at = EXCLUDED.last_outcome_at, updated_at = now()
                """);
            command.Parameters.AddWithValue("tenant", tenant);
            command.Parameters.Add(new NpgsqlParameter("worker", NpgsqlDbType.Uuid) { Value = workerId is { } w ? w : DBNull.Value });
            return await command.ExecuteNonQueryAsync(ct);
        }, cancellationToken);
}

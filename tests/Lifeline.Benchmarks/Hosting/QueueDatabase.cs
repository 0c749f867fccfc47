using System.Diagnostics;
using System.Globalization;
using Lifeline.ServiceDefaults.Postgres;
using Npgsql;

namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// The planner statistics of the queue's <c>tasks</c> table at one moment, from <c>pg_stat_user_tables</c> and
/// <c>pg_class</c>: whether the planner had statistics to plan the queue's statements with.
/// </summary>
/// <param name="ReadAt">The database's clock when read.</param>
/// <param name="LastAnalyzedAt">The later of last_analyze and last_autoanalyze; null when the table was never analyzed.</param>
/// <param name="Analyses">analyze_count + autoanalyze_count.</param>
/// <param name="Vacuums">vacuum_count + autovacuum_count.</param>
/// <param name="AutoVacuums">autovacuum_count alone: an autovacuum during a row competes for the cores.</param>
/// <param name="RelTuples">pg_class.reltuples: −1 until the table was first analyzed or vacuumed.</param>
/// <param name="LiveRows">n_live_tup.</param>
/// <param name="ChangedSinceAnalyze">n_mod_since_analyze.</param>
/// <param name="Checkpoints">The cluster's checkpoints so far (pg_stat_bgwriter, timed + requested): a checkpoint during a row
/// writes out what the row dirtied and competes with its commits' WAL flushes, a likely cause of latency outliers.</param>
internal sealed record TableStatistics(
    DateTime ReadAt, DateTime? LastAnalyzedAt, long Analyses, long Vacuums, long AutoVacuums, long RelTuples, long LiveRows, long ChangedSinceAnalyze,
    long Checkpoints)
{
    public bool HasStatistics => LastAnalyzedAt is not null && RelTuples >= 0;

    /// <summary>The keeper's own rule (<see cref="StatisticsPolicy.NeedsAnalyze"/>, the queue's thresholds): nothing it would analyze now.</summary>
    public bool Current => HasStatistics
        && !KeeperRule.NeedsAnalyze(false, ChangedSinceAnalyze, LiveRows, RelTuples, ReadAt - LastAnalyzedAt!.Value);

    private static readonly StatisticsPolicy KeeperRule = new(["tasks"], TimeSpan.FromSeconds(5));

    public override string ToString() =>
        HasStatistics
            ? string.Create(CultureInfo.InvariantCulture,
                $"analyzed {(ReadAt - LastAnalyzedAt!.Value).TotalSeconds:0.0} s before (reltuples {RelTuples:N0}, {ChangedSinceAnalyze:N0} rows changed since)")
            : string.Create(CultureInfo.InvariantCulture, $"NO STATISTICS (never analyzed; reltuples {RelTuples:N0}, {LiveRows:N0} live rows)");

    /// <summary>What happened between <paramref name="start"/> and this reading: analyses, vacuums (the keeper's and autovacuum's) and checkpoints.</summary>
    public string ChangesSince(TableStatistics start)
    {
        var parts = new List<string>();
        var analyses = Analyses - start.Analyses;
        if (analyses > 0)
        {
            var at = LastAnalyzedAt is { } last ? (last - start.ReadAt).TotalSeconds : double.NaN;
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"analyzed ×{analyses} (last {at:0.0} s after the row started)"));
        }

        var autoVacuums = AutoVacuums - start.AutoVacuums;
        var vacuums = Vacuums - start.Vacuums - autoVacuums;
        if (vacuums > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"vacuumed ×{vacuums}"));
        }

        if (autoVacuums > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"autovacuumed ×{autoVacuums}"));
        }

        var checkpoints = Checkpoints - start.Checkpoints;
        if (checkpoints > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"checkpoint ×{checkpoints}"));
        }

        return parts.Count == 0 ? "no analyze, vacuum or checkpoint" : string.Join(", ", parts);
    }
}

/// <summary>
/// The queue service's own database, when this run started the service (so it is the benchmark's, and no one else's):
/// read the planner statistics of <c>tasks</c>; remove a row's tasks once it is verified (so every row starts from the
/// same table); cut a row's unprocessed backlog when its window ends; and insert large numbers of pending tasks
/// directly (<c>INSERT … SELECT generate_series</c>), with their <c>enqueued</c> history, as EnqueueTasks would store them.
/// </summary>
internal sealed class QueueDatabase(string connectionString)
{
    private static readonly TimeSpan StatementTimeout = TimeSpan.FromMinutes(10);

    private const string StatisticsSql = """
        SELECT now()::timestamp, GREATEST(s.last_analyze, s.last_autoanalyze)::timestamp, s.analyze_count + s.autoanalyze_count,
               s.vacuum_count + s.autovacuum_count, s.autovacuum_count, c.reltuples::bigint, s.n_live_tup, s.n_mod_since_analyze,
               (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE s.relid = 'tasks'::regclass
        """;

    // Ids shaped like the service's (UUID version 7: milliseconds first, so new ids land at the end of the indexes).
    private const string InsertPendingSql = """
        WITH inserted AS (
            INSERT INTO tasks (id, tenant_id, type, status, priority, payload, created_at, updated_at, not_before, max_retries,
                               timeout_seconds, backoff, initial_interval_ms, maximum_interval_ms, jitter)
            SELECT (lpad(to_hex(@milliseconds), 12, '0') || '7' || @random || '8' || lpad(to_hex(@first + g), 15, '0'))::uuid,
                   @tenant, @type, 'pending', @priority,
                   jsonb_build_object('n', @first + g, 'order', 'bench-' || (@first + g), 'note', repeat('x', 64)),
                   now(), now(), now(), 3, 3600, 'exponential', 1000, 300000, 0.1
            FROM generate_series(0::bigint, @count - 1) AS g
            RETURNING id, tenant_id, type
        )
        INSERT INTO task_history (tenant_id, task_id, task_type, event_type, from_status, to_status)
        SELECT tenant_id, id, type, 'enqueued', NULL, 'pending' FROM inserted
        """;

    public async Task<TableStatistics> ReadStatisticsAsync(CancellationToken ct)
    {
        await using var connection = await OpenAsync(ct);
        await using var command = new NpgsqlCommand(StatisticsSql, connection);
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
        {
            throw new InvalidOperationException("The queue's database has no tasks table (not migrated?).");
        }

        return new TableStatistics(
            reader.GetDateTime(0), reader.IsDBNull(1) ? null : reader.GetDateTime(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4),
            reader.GetInt64(5), reader.GetInt64(6), reader.GetInt64(7), reader.GetInt64(8));
    }

    /// <summary>
    /// Waits (up to <paramref name="timeout"/>) until the queue's statistics keeper has analyzed <c>tasks</c> after the
    /// changes made so far (its own rule: fewer than max(1,000, 10 %) rows changed since). The benchmark does not analyze
    /// for the service: a keeper that fails to keep up shows as a row that starts with stale statistics.
    /// </summary>
    public async Task<(TableStatistics Statistics, double WaitedSeconds)> WaitForCurrentStatisticsAsync(TimeSpan timeout, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            var statistics = await ReadStatisticsAsync(ct);
            var waited = Stopwatch.GetElapsedTime(started);
            if (statistics.Current || waited > timeout)
            {
                return (statistics, waited.TotalSeconds);
            }

            await Task.Delay(250, ct);
        }
    }

    /// <summary>
    /// Deletes the still-pending tasks of <paramref name="taskType"/> (a row's unprocessed backlog once its window
    /// ended), skipping those a LeaseTasks or a dispatch has locked (they become leased, and their worker completes
    /// them), until none is pending; nothing can be leased after that. Returns how many were deleted.
    /// </summary>
    public async Task<long> CutBacklogAsync(string tenant, string taskType, CancellationToken ct)
    {
        await using var connection = await OpenAsync(ct);
        long cut = 0;
        for (var round = 0; ; round++)
        {
            await using var command = new NpgsqlCommand("""
                WITH cut AS (
                    DELETE FROM tasks WHERE id IN (
                        SELECT id FROM tasks WHERE tenant_id = @tenant AND type = @type AND status = 'pending' FOR UPDATE SKIP LOCKED)
                    RETURNING id)
                SELECT (SELECT count(*) FROM cut),
                       (SELECT count(*) FROM tasks WHERE tenant_id = @tenant AND type = @type AND status = 'pending')
                """, connection);
            command.Parameters.AddWithValue("tenant", tenant);
            command.Parameters.AddWithValue("type", taskType);
            long deleted, pending;
            await using (var reader = await command.ExecuteReaderAsync(ct))
            {
                await reader.ReadAsync(ct);
                (deleted, pending) = (reader.GetInt64(0), reader.GetInt64(1));
            }

            cut += deleted;
            // The second count sees the table as it was before this statement's own deletions: a round that deletes
            // nothing and sees nothing pending proves it empty.
            if (deleted == 0 && pending == 0)
            {
                return cut;
            }

            if (round > 1000)
            {
                throw new InvalidOperationException($"Tasks of {taskType} stay pending after 1,000 rounds of cutting the backlog.");
            }

            if (deleted == 0)
            {
                await Task.Delay(10, ct); // the rest is locked by leases in flight: they will be leased, not pending
            }
        }
    }

    /// <summary>
    /// Removes every task of <paramref name="taskType"/> and its history once the row is verified, then vacuums, so the
    /// next row starts from the same table (and no autovacuum of this row's dead rows runs during the next one).
    /// </summary>
    public async Task RemoveTasksAsync(string tenant, string taskType, CancellationToken ct)
    {
        await using var connection = await OpenAsync(ct);
        await using (var tx = await connection.BeginTransactionAsync(ct))
        {
            await using (var history = new NpgsqlCommand("DELETE FROM task_history WHERE tenant_id = @tenant AND task_type = @type", connection, tx))
            {
                history.Parameters.AddWithValue("tenant", tenant);
                history.Parameters.AddWithValue("type", taskType);
                await history.ExecuteNonQueryAsync(ct);
            }

            await using (var tasks = new NpgsqlCommand("DELETE FROM tasks WHERE tenant_id = @tenant AND type = @type", connection, tx))
            {
                tasks.Parameters.AddWithValue("tenant", tenant);
                tasks.Parameters.AddWithValue("type", taskType);
                await tasks.ExecuteNonQueryAsync(ct);
            }

            await tx.CommitAsync(ct);
        }

        await ExecuteAsync(connection, "VACUUM tasks, task_history", ct);
    }

    /// <summary>
    /// Inserts <paramref name="count"/> pending tasks of <paramref name="taskType"/> (payload about 100 bytes, the
    /// service's default retry policy and timeout) with their <c>enqueued</c> history, <paramref name="chunk"/> per
    /// transaction, reporting progress. The caller decides what the service needs afterwards (statistics, a vacuum).
    /// </summary>
    public async Task InsertPendingAsync(
        string tenant, string taskType, long count, int priority, long chunk, Action<long>? progress, CancellationToken ct)
    {
        await using var connection = await OpenAsync(ct);
        var milliseconds = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var random = Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.Next()))[..3];
        for (long first = 0; first < count; first += chunk)
        {
            await using var command = new NpgsqlCommand(InsertPendingSql, connection);
            command.Parameters.AddWithValue("milliseconds", milliseconds);
            command.Parameters.AddWithValue("random", random);
            command.Parameters.AddWithValue("first", first);
            command.Parameters.AddWithValue("count", Math.Min(chunk, count - first));
            command.Parameters.AddWithValue("tenant", tenant);
            command.Parameters.AddWithValue("type", taskType);
            command.Parameters.AddWithValue("priority", priority);
            await command.ExecuteNonQueryAsync(ct);
            progress?.Invoke(Math.Min(count, first + chunk));
        }
    }

    /// <summary>VACUUM (ANALYZE) of the queue's tables, then a CHECKPOINT: after a bulk insert, so neither autovacuum nor a checkpoint's writes fall into the rows that follow.</summary>
    public async Task SettleAsync(CancellationToken ct)
    {
        await using var connection = await OpenAsync(ct);
        await ExecuteAsync(connection, "VACUUM (ANALYZE) tasks, task_history", ct);
        await ExecuteAsync(connection, "CHECKPOINT", ct);
    }

    private async Task<NpgsqlConnection> OpenAsync(CancellationToken ct)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString)
        {
            CommandTimeout = (int)StatementTimeout.TotalSeconds,
            // Not the service's pool: the benchmark's own few connections.
            ApplicationName = "lifeline-benchmark",
        };
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync(ct);
        return connection;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }
}

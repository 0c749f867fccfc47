using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>Which tables a <see cref="StatisticsKeeper"/> watches and when it analyzes them.</summary>
/// <param name="Tables">Table names in the service's schema (constants, never input).</param>
/// <param name="Interval">How often the keeper looks.</param>
/// <param name="Threshold">Changed rows that always justify an ANALYZE (a never-analyzed table: a tenth of it).</param>
/// <param name="ScaleFactor">The fraction of the table's live rows that must have changed since its last ANALYZE.</param>
/// <param name="VacuumThreshold">Dead row versions that justify a VACUUM of a table (0: never vacuum; leave it to autovacuum).</param>
/// <param name="VacuumScaleFactor">… or this fraction of its live rows, whichever is larger.</param>
/// <param name="ChurnInterval">The least time between two analyzes of a table whose size has not changed much: a queue's
/// table changes all of itself every minute with the same shape; analyzing it every few seconds cost the hot path
/// more than it could gain (each ANALYZE makes every connection rebuild the table's cached description and re-plan its
/// statements). Null means a minute, like autovacuum's round.</param>
public sealed record StatisticsPolicy(IReadOnlyList<string> Tables, TimeSpan Interval, long Threshold = 1000, double ScaleFactor = 0.1,
    long VacuumThreshold = 0, double VacuumScaleFactor = 0.05, TimeSpan? ChurnInterval = null)
{
    /// <summary>How much a table's size may change before its statistics are stale at once: halved or doubled.</summary>
    public const double SizeFactor = 2;

    public TimeSpan ChurnEvery => ChurnInterval ?? TimeSpan.FromMinutes(1);

    /// <summary>
    /// Whether a table needs an ANALYZE now: it was never analyzed and holds rows (a tenth of them changed, or the
    /// threshold); or max(<see cref="Threshold"/>, <see cref="ScaleFactor"/> × live rows) changed since its last analyze
    /// and either its size moved by <see cref="SizeFactor"/> against the planner's row count (<paramref name="relTuples"/>,
    /// which ANALYZE and VACUUM set) — a table that just grew by a million rows — or the last analyze is
    /// <see cref="ChurnEvery"/> old.
    /// </summary>
    public bool NeedsAnalyze(bool neverAnalyzed, long changed, long live, double relTuples, TimeSpan sinceAnalyze)
    {
        if (neverAnalyzed)
        {
            return changed >= Math.Max(1, Math.Min(Threshold, live / 10));
        }
        if (changed < Math.Max(Threshold, (long)(ScaleFactor * live)))
        {
            return false;
        }
        var known = Math.Max(relTuples, 0);
        var resized = live >= SizeFactor * known + Threshold || live + Threshold <= known / SizeFactor;
        return resized || sinceAnalyze >= ChurnEvery;
    }
}

/// <summary>
/// Keeps the planner's statistics of a service's hot tables current, instead of waiting for autovacuum: autovacuum
/// visits a database at most once a minute (<c>autovacuum_naptime</c>) and analyzes a table only after 50 rows + 10 %
/// of it changed, so a new deployment, or a table that just grew by a million rows, ran its hot statements on plans
/// made without statistics — 10× the CPU per task in the queue's first minute (issue 15). Every
/// <see cref="StatisticsPolicy.Interval"/> it reads <c>pg_stat_user_tables</c> and runs <c>ANALYZE</c> on a table
/// that <see cref="StatisticsPolicy.NeedsAnalyze"/>: never analyzed once it holds rows; halved or doubled since; or
/// changed by max(<see cref="StatisticsPolicy.Threshold"/>, <see cref="StatisticsPolicy.ScaleFactor"/> × live rows)
/// with its last analyze a minute old (<see cref="StatisticsPolicy.ChurnInterval"/>). Instances
/// take turns through a transaction-scoped advisory lock: two at once would only repeat the work. (A mutex for one pass,
/// not a role: no instance is "the" keeper, so it needs no <see cref="Leadership.LeaderElection"/> and no fencing.)
/// <para>
/// With a <see cref="StatisticsPolicy.VacuumThreshold"/> it also vacuums a table whose dead row versions passed
/// max(threshold, <see cref="StatisticsPolicy.VacuumScaleFactor"/> × live rows). A queue needs it: every lease
/// leaves a dead entry at the head of the ready index, and each later lease steps over all of them until a VACUUM
/// removes them (measured: 20,000 leases → 100 index pages read per lease instead of 4), so throughput sank
/// second by second while autovacuum waited for its 20 % and its next one-minute round.
/// </para>
/// </summary>
public sealed partial class StatisticsKeeper(NpgsqlDataSource dataSource, StatisticsPolicy policy, ILogger<StatisticsKeeper> logger)
    : BackgroundLoop(logger, LoopBackoff.Between(policy.Interval, TimeSpan.FromMinutes(1)))
{
    private const long LockKey = 0x4c_69_66_65_53_74_61_74; // "LifeStat"

    /// <summary>Statistics go stale in the first seconds of a new database: look soon after start.</summary>
    protected override TimeSpan FirstDelay => TimeSpan.FromSeconds(1);

    /// <summary>
    /// How soon to look again while a table has never been analyzed, in the keeper's first <see cref="FirstMinutes"/>: a
    /// new deployment's first tasks must not wait a whole interval for their table's first statistics.
    /// </summary>
    public static readonly TimeSpan FirstStatisticsInterval = TimeSpan.FromSeconds(1);

    /// <summary>How long after start the keeper looks every <see cref="FirstStatisticsInterval"/> for a table's first rows.</summary>
    public static readonly TimeSpan FirstMinutes = TimeSpan.FromMinutes(2);

    private readonly long _started = System.Diagnostics.Stopwatch.GetTimestamp();
    private bool _someNeverAnalyzed = true;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await RunOnceAsync(stoppingToken);
        return _someNeverAnalyzed && Early && FirstStatisticsInterval < policy.Interval ? FirstStatisticsInterval : policy.Interval;
    }

    /// <summary>Within the keeper's first <see cref="FirstMinutes"/>.</summary>
    private bool Early => System.Diagnostics.Stopwatch.GetElapsedTime(_started) < FirstMinutes;

    /// <summary>One look: analyzes, then vacuums, the tables that need it; returns their names (a table analyzed and vacuumed twice).</summary>
    public async Task<IReadOnlyList<string>> RunOnceAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken);
        await using (var locking = new NpgsqlCommand("SELECT pg_try_advisory_xact_lock(@key)", connection, tx))
        {
            locking.Parameters.AddWithValue("key", LockKey);
            if (await locking.ExecuteScalarAsync(cancellationToken) is not true)
            {
                return []; // another instance is looking
            }
        }

        var due = new List<(string Table, long Changed, long Live)>();
        var vacuum = new List<(string Table, long Dead, long Live)>();
        var neverAnalyzed = new List<(string Table, long Changed, long Live)>();
        await using (var reading = new NpgsqlCommand("""
            SELECT s.relname, s.n_mod_since_analyze, s.n_live_tup, s.last_analyze IS NULL AND s.last_autoanalyze IS NULL, s.n_dead_tup,
                   c.reltuples::float8, COALESCE(EXTRACT(epoch FROM now() - GREATEST(s.last_analyze, s.last_autoanalyze)), 0)::float8
            FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
            WHERE s.schemaname = current_schema() AND s.relname = ANY(@tables)
            """, connection, tx))
        {
            reading.Parameters.AddWithValue("tables", policy.Tables.ToArray());
            await using var reader = await reading.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var (table, changed, live, never) = (reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetBoolean(3));
                var dead = reader.GetInt64(4);
                if (policy.VacuumThreshold > 0 && dead >= Math.Max(policy.VacuumThreshold, (long)(policy.VacuumScaleFactor * live)))
                {
                    vacuum.Add((table, dead, live));
                }
                if (policy.NeedsAnalyze(never, changed, live, reader.GetDouble(5), TimeSpan.FromSeconds(reader.GetDouble(6))))
                {
                    due.Add((table, changed, live));
                }
                else if (never)
                {
                    neverAnalyzed.Add((table, changed, live));
                }
            }
        }
        foreach (var table in Early ? neverAnalyzed.ToList() : [])
        {
            // A backend's table counters reach pg_stat at most once a second, and an idle one's only ten seconds later: in
            // the first minutes a never-analyzed table is asked directly whether it holds rows yet (later the counters do).
            await using var any = new NpgsqlCommand($"SELECT EXISTS (SELECT 1 FROM {table.Table})", connection, tx);
            if (await any.ExecuteScalarAsync(cancellationToken) is true)
            {
                neverAnalyzed.Remove(table);
                due.Add(table);
            }
        }

        foreach (var (table, changed, live) in due)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            // The table name comes from the policy (the service's constants), never from input.
            await using var analyze = new NpgsqlCommand($"ANALYZE {table}", connection, tx);
            await analyze.ExecuteNonQueryAsync(cancellationToken);
            LogAnalyzed(logger, table, changed, live, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        await tx.CommitAsync(cancellationToken);
        _someNeverAnalyzed = neverAnalyzed.Count > 0;

        foreach (var (table, dead, live) in vacuum)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            // Outside a transaction, as VACUUM must be; SKIP_LOCKED: an instance or autovacuum already at it is enough.
            await using var vacuuming = new NpgsqlCommand($"VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) {table}", connection) { CommandTimeout = 300 };
            await vacuuming.ExecuteNonQueryAsync(cancellationToken);
            LogVacuumed(logger, table, dead, live, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        return [.. due.Select(d => d.Table), .. vacuum.Select(v => v.Table)];
    }

    // Debug: under load a queue's table is vacuumed every second or two, routine work an operator's log need not list.
    [LoggerMessage(EventId = 9102, Level = LogLevel.Debug,
        Message = "Vacuumed {Table}: {Dead} dead row versions ({Live} live); {Milliseconds:F0} ms")]
    private static partial void LogVacuumed(ILogger logger, string table, long dead, long live, double milliseconds);

    [LoggerMessage(EventId = 9004, Level = LogLevel.Information,
        Message = "Analyzed {Table}: {Changed} rows changed since its statistics were made ({Live} live); {Milliseconds:F0} ms")]
    private static partial void LogAnalyzed(ILogger logger, string table, long changed, long live, double milliseconds);
}

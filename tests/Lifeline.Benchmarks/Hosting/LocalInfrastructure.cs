using Lifeline.Benchmarks.Measurement;
using Lifeline.Testing;
using Npgsql;

namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// What locally started services share: one durable PostgreSQL cluster (a database per service) and
/// one Redis. Both are stopped on dispose.
/// </summary>
internal sealed class LocalInfrastructure : IAsyncDisposable
{
    private static readonly string[] ReportedPostgresSettings =
        ["server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers", "max_connections"];

    private readonly PostgresServer _postgres;
    private readonly RedisServer _redis;
    private int? _postmaster;
    private IReadOnlyList<int>? _redisPids;

    private LocalInfrastructure(PostgresServer postgres, RedisServer redis, IReadOnlyDictionary<string, string> postgresSettings)
    {
        _postgres = postgres;
        _redis = redis;
        PostgresSettings = postgresSettings;
    }

    /// <summary>Settings of the PostgreSQL cluster (checked to be crash-safe).</summary>
    public IReadOnlyDictionary<string, string> PostgresSettings { get; }

    public string RedisConnectionString => _redis.ConnectionString;

    /// <summary>Where the cluster's pg_dump and pg_restore are (the raw baseline of the backup section).</summary>
    public string PostgresBinDirectory => _postgres.BinDirectory;

    public string Description => $"PostgreSQL {PostgresSettings["server_version"]} on 127.0.0.1:{_postgres.Port}; Redis on {_redis.ConnectionString}";

    /// <summary>Starts a durable PostgreSQL cluster and a Redis server.</summary>
    public static async Task<LocalInfrastructure> StartAsync(CancellationToken ct)
    {
        var postgresStart = PostgresServer.StartDedicatedAsync(Testing.PostgresSettings.Durable with { TrackStatements = TrackStatements });
        var redisStart = RedisServer.StartAsync();
        try
        {
            await Task.WhenAll(postgresStart, redisStart);
            var settings = await ReadPostgresSettingsAsync(postgresStart.Result.AdminConnectionString, ct);
            if (settings["fsync"] != "on" || settings["synchronous_commit"] != "on" || settings["full_page_writes"] != "on")
            {
                throw new InvalidOperationException("The benchmark cluster is not durable: " + string.Join(", ", settings));
            }

            return new LocalInfrastructure(postgresStart.Result, redisStart.Result, settings);
        }
        catch
        {
            // Whichever started is stopped again even if the other failed.
            if (postgresStart.IsCompletedSuccessfully)
            {
                await postgresStart.Result.DisposeAsync();
            }

            if (redisStart.IsCompletedSuccessfully)
            {
                await redisStart.Result.DisposeAsync();
            }

            throw;
        }
    }

    /// <summary>The Redis server process (its title names its port; found once).</summary>
    public IReadOnlyList<int> RedisPids()
    {
        if (_redisPids is { Count: > 0 } known && known.All(pid => File.Exists($"/proc/{pid}/stat")))
        {
            return known;
        }

        _redisPids = ProcessTable.Find(c => c.Contains("redis-server", StringComparison.Ordinal) && c.Contains($":{_redis.Port}", StringComparison.Ordinal));
        return _redisPids;
    }

    /// <summary>
    /// The PostgreSQL postmaster (found once by its command line; its children — backends, checkpointer, WAL writer,
    /// autovacuum — keep their own titles), whose process tree <see cref="CpuMeter"/> measures.
    /// </summary>
    public int? PostgresPostmaster()
    {
        if (_postmaster is { } known && File.Exists($"/proc/{known}/stat"))
        {
            return known;
        }

        _postmaster = ProcessTable.Find(c =>
            c.Contains("/bin/postgres -D", StringComparison.Ordinal) && !c.Contains("runuser", StringComparison.Ordinal) &&
            c.Contains($" -p {_postgres.Port} ", StringComparison.Ordinal)).Cast<int?>().FirstOrDefault();
        return _postmaster;
    }

    /// <summary>A new empty database on the cluster; the connection string is the superuser's.</summary>
    public Task<string> CreateDatabaseAsync(string namePrefix, CancellationToken ct) => _postgres.CreateDatabaseAsync(namePrefix, ct);

    /// <summary>
    /// <c>LIFELINE_BENCH_STATEMENTS=1</c>: the cluster loads <c>pg_stat_statements</c> and the run ends with the statements
    /// that took PostgreSQL the most time (a diagnosis; it costs PostgreSQL a little CPU of its own).
    /// </summary>
    private static bool TrackStatements => Environment.GetEnvironmentVariable("LIFELINE_BENCH_STATEMENTS") == "1";

    public async ValueTask DisposeAsync()
    {
        if (TrackStatements)
        {
            await PrintTopStatementsAsync();
        }
        await _redis.DisposeAsync();
        await _postgres.DisposeAsync();
    }

    private async Task PrintTopStatementsAsync()
    {
        await using var connection = new NpgsqlConnection(_postgres.AdminConnectionString);
        await connection.OpenAsync();
        await using (var create = new NpgsqlCommand("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", connection))
        {
            await create.ExecuteNonQueryAsync();
        }
        await using var top = new NpgsqlCommand("""
            SELECT d.datname, s.calls, round(s.total_exec_time)::bigint, s.rows, left(regexp_replace(s.query, '\s+', ' ', 'g'), 160)
            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
            ORDER BY s.total_exec_time DESC LIMIT 25
            """, connection);
        await using var reader = await top.ExecuteReaderAsync();
        Console.WriteLine("== PostgreSQL statements by total execution time (pg_stat_statements) ==");
        Console.WriteLine("database | calls | total ms | rows | statement");
        while (await reader.ReadAsync())
        {
            Console.WriteLine($"{reader.GetString(0)} | {reader.GetInt64(1)} | {reader.GetInt64(2)} | {reader.GetInt64(3)} | {reader.GetString(4)}");
        }
    }

    private static async Task<IReadOnlyDictionary<string, string>> ReadPostgresSettingsAsync(string connectionString, CancellationToken ct)
    {
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        foreach (var name in ReportedPostgresSettings)
        {
            await using var command = new NpgsqlCommand($"SHOW {name}", connection);
            settings[name] = (string)(await command.ExecuteScalarAsync(ct))!;
        }

        return settings;
    }
}

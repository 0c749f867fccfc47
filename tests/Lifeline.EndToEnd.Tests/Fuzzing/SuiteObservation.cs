using System.Globalization;
using System.Net;
using System.Text.Json;
using Lifeline.EndToEnd.Tests.Suite;
using Npgsql;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// What can be seen of the suite's processes: the pid and start time of each resource's process as Aspire reports it
/// (a restart changes them), the gateway's aggregate <c>/health</c> (every service's health), and how far the resources'
/// log has grown (the AppHost writes "NAME exited with code N; restarting" into the crashed resource's log).
/// </summary>
internal sealed record SuiteProcesses(IReadOnlyDictionary<string, string> PidFiles, HttpStatusCode? Health, long LogLength)
{
    public static async Task<SuiteProcesses> ObserveAsync(SuiteFixture suite)
    {
        var pids = suite.ResourceProcesses();
        var log = new FileInfo(suite.ApphostLog);
        return new SuiteProcesses(pids, await suite.HealthAsync(), log.Exists ? log.Length : 0);
    }

    /// <summary>What changed from <paramref name="before"/> to this observation: restarts, deaths, health, and the apphost's reports.</summary>
    public IReadOnlyList<string> ChangesSince(SuiteProcesses before, SuiteFixture suite)
    {
        var changes = new List<string>();
        foreach (var (name, was) in before.PidFiles)
        {
            if (!PidFiles.TryGetValue(name, out var now))
            {
                changes.Add($"{name}: no process (was '{was}')");
            }
            else if (now != was)
            {
                changes.Add($"{name}: restarted (pid and start time '{was}' → '{now}')");
            }
            else if (suite.ResourcePid(name) is null)
            {
                changes.Add($"{name}: process {was.Split(' ')[0]} is no longer alive");
            }
        }

        if (Health != HttpStatusCode.OK)
        {
            changes.Add($"gateway /health answers {Health?.ToString() ?? "nothing"} (was {before.Health})");
        }

        changes.AddRange(LogLinesSince(suite, before.LogLength)
            .Where(l => l.Contains("exited with code", StringComparison.Ordinal) || l.Contains("restarting", StringComparison.OrdinalIgnoreCase))
            .Take(20)
            .Select(l => "apphost: " + l.Trim()));
        return changes;
    }

    private static IEnumerable<string> LogLinesSince(SuiteFixture suite, long offset)
    {
        using var stream = new FileStream(suite.ApphostLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        stream.Seek(Math.Min(offset, stream.Length), SeekOrigin.Begin);
        using var reader = new StreamReader(stream);
        var lines = new List<string>();
        while (reader.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        return lines;
    }
}

/// <summary>
/// The suite's PostgreSQL, read directly as its superuser (password in <c>&lt;data-dir&gt;/secrets.json</c>): row counts
/// of the entities RPCs create, and every row anywhere that carries a fuzz marker.
/// </summary>
internal sealed class SuiteStore(SuiteFixture suite)
{
    /// <summary>Tables whose rows only RPCs create, counted per tenant before and after a run.</summary>
    public static readonly (string Database, string Table)[] EntityTables = [("queuedb", "tasks"), ("registrydb", "workers"), ("checkpointdb", "checkpoints")];

    private readonly string _password = SuperuserPassword(suite.DataDirectory);

    /// <summary>Rows of <paramref name="tenant"/> in each of <see cref="EntityTables"/>, keyed <c>db.table</c>.</summary>
    public async Task<Dictionary<string, long>> CountAsync(string tenant, CancellationToken cancellationToken)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (database, table) in EntityTables)
        {
            await using var connection = await OpenAsync(database, cancellationToken);
            await using var command = new NpgsqlCommand($"SELECT count(*) FROM \"{table}\" WHERE tenant_id = $1", connection) { CommandTimeout = 60 };
            command.Parameters.AddWithValue(tenant);
            counts[$"{database}.{table}"] = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        }

        return counts;
    }

    /// <summary>
    /// Every (table, case id, rows) where rows of any table of any database of the suite carry the marker of a case of
    /// run <paramref name="run"/> anywhere in their text (<c>row::text</c>: every column, arrays and JSON included).
    /// </summary>
    public async Task<List<(string Table, int CaseId, long Rows)>> MarkedRowsAsync(string run, CancellationToken cancellationToken)
    {
        var found = new List<(string, int, long)>();
        var prefix = $"fz{run}c";
        foreach (var database in await DatabasesAsync(cancellationToken))
        {
            await using var connection = await OpenAsync(database, cancellationToken);
            var tables = new List<(string Schema, string Name)>();
            await using (var list = new NpgsqlCommand(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
                connection))
            await using (var reader = await list.ExecuteReaderAsync(cancellationToken))
            {
                while (await reader.ReadAsync(cancellationToken))
                {
                    tables.Add((reader.GetString(0), reader.GetString(1)));
                }
            }

            foreach (var (schema, name) in tables)
            {
                var sql = $"""
                    SELECT m[1], count(*) FROM (
                      SELECT regexp_matches(t::text, '{prefix}([0-9]+)z', 'g') AS m FROM "{schema}"."{name}" t WHERE strpos(t::text, '{prefix}') > 0
                    ) x GROUP BY m[1]
                    """;
                await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 120 };
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    found.Add(($"{database}.{name}", int.Parse(reader.GetString(0), CultureInfo.InvariantCulture), reader.GetInt64(1)));
                }
            }
        }

        return found;
    }

    private async Task<List<string>> DatabasesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync("postgres", cancellationToken);
        await using var command = new NpgsqlCommand("SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY datname", connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var names = new List<string>();
        while (await reader.ReadAsync(cancellationToken))
        {
            names.Add(reader.GetString(0));
        }

        return names;
    }

    private async Task<NpgsqlConnection> OpenAsync(string database, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = suite.PostgresPort,
            Username = "postgres",
            Password = _password,
            Database = database,
            Timeout = 15,
            Pooling = false,
        }.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    private static string SuperuserPassword(string dataDirectory)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(dataDirectory, "secrets.json")));
        return document.RootElement.GetProperty("postgresSuperuserPassword").GetString()
            ?? throw new InvalidOperationException("secrets.json has no postgresSuperuserPassword.");
    }
}

using Npgsql;

namespace Lifeline.Testing.Tests;

public sealed class PostgresServerTests
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Databases_created_for_different_tests_are_isolated_from_each_other()
    {
        var server = await PostgresServer.GetAsync();
        var first = await server.CreateDatabaseAsync("Isolation-Test");
        var second = await server.CreateDatabaseAsync("Isolation-Test");
        try
        {
            Assert.NotEqual(new NpgsqlConnectionStringBuilder(first).Database, new NpgsqlConnectionStringBuilder(second).Database);
            Assert.StartsWith("isolation_test_", new NpgsqlConnectionStringBuilder(first).Database, StringComparison.Ordinal);

            await ExecuteAsync(first, "CREATE TABLE widgets (id int PRIMARY KEY); INSERT INTO widgets VALUES (1);");

            Assert.Equal(1L, await ScalarAsync<long>(first, "SELECT count(*) FROM widgets"));
            Assert.False(await ScalarAsync<bool>(second, "SELECT to_regclass('public.widgets') IS NOT NULL"));
        }
        finally
        {
            await server.DropDatabaseAsync(first);
            await server.DropDatabaseAsync(second);
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Parallel_database_creation_yields_distinct_usable_databases_that_drop_cleanly()
    {
        var server = await PostgresServer.GetAsync();

        var connectionStrings = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => server.CreateDatabaseAsync("parallel")));
        var names = await Task.WhenAll(connectionStrings.Select(cs => ScalarAsync<string>(cs, "SELECT current_database()")));

        Assert.Equal(8, names.Distinct().Count());
        await Task.WhenAll(connectionStrings.Select(server.DropDatabaseAsync));
        var remaining = await ScalarAsync<long>(
            server.AdminConnectionString, $"SELECT count(*) FROM pg_database WHERE datname IN ('{string.Join("','", names)}')");
        Assert.Equal(0L, remaining);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cluster_listens_on_loopback_with_the_fast_test_settings()
    {
        var server = await PostgresServer.GetAsync();

        Assert.Equal("127.0.0.1", await ScalarAsync<string>(server.AdminConnectionString, "SHOW listen_addresses"));
        Assert.Equal("off", await ScalarAsync<string>(server.AdminConnectionString, "SHOW fsync"));
        Assert.Equal("400", await ScalarAsync<string>(server.AdminConnectionString, "SHOW max_connections"));
        Assert.StartsWith("15", await ScalarAsync<string>(server.AdminConnectionString, "SHOW server_version"), StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Dedicated_cluster_runs_apart_from_the_shared_one_with_its_own_settings_and_stops_on_dispose()
    {
        var shared = await PostgresServer.GetAsync();
        var dedicated = await PostgresServer.StartDedicatedAsync(PostgresSettings.Durable);
        try
        {
            Assert.NotEqual(shared.Port, dedicated.Port);
            foreach (var setting in new[] { "fsync", "synchronous_commit", "full_page_writes" })
            {
                Assert.Equal("on", await ScalarAsync<string>(dedicated.AdminConnectionString, $"SHOW {setting}"));
                Assert.Equal("off", await ScalarAsync<string>(shared.AdminConnectionString, $"SHOW {setting}"));
            }

            var database = await dedicated.CreateDatabaseAsync("dedicated");
            Assert.Equal(1, await ScalarAsync<int>(database, "SELECT 1"));
        }
        finally
        {
            await dedicated.DisposeAsync();
        }

        await Assert.ThrowsAnyAsync<NpgsqlException>(() =>
            ScalarAsync<int>(new NpgsqlConnectionStringBuilder(dedicated.AdminConnectionString) { Pooling = false, Timeout = 2 }.ConnectionString, "SELECT 1"));
        await shared.DisposeAsync();
        Assert.Equal(1, await ScalarAsync<int>(shared.AdminConnectionString, "SELECT 1"));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_crashed_dedicated_cluster_refuses_connections_and_restarts_on_its_port_with_its_committed_data()
    {
        var shared = await PostgresServer.GetAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(shared.CrashAsync);
        await using var dedicated = await PostgresServer.StartDedicatedAsync(PostgresSettings.Durable);
        var database = await dedicated.CreateDatabaseAsync("crash");
        await ExecuteAsync(database, "CREATE TABLE widgets (id int PRIMARY KEY); INSERT INTO widgets VALUES (1), (2);");
        var unpooled = new NpgsqlConnectionStringBuilder(database) { Pooling = false, Timeout = 2 }.ConnectionString;

        await dedicated.CrashAsync();
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => ScalarAsync<long>(unpooled, "SELECT count(*) FROM widgets"));

        await dedicated.RestartAsync();
        Assert.Equal(2L, await ScalarAsync<long>(unpooled, "SELECT count(*) FROM widgets"));
        Assert.Equal(1, await ScalarAsync<int>(await dedicated.CreateDatabaseAsync("after_crash"), "SELECT 1"));
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}

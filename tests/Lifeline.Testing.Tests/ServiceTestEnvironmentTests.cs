using Npgsql;
using StackExchange.Redis;

namespace Lifeline.Testing.Tests;

public sealed class QueueLikeEnvironment() : ServiceTestEnvironment("queue");

public sealed class ServiceTestEnvironmentTests(QueueLikeEnvironment environment) : IClassFixture<QueueLikeEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Fixture_provides_its_own_database_and_redis()
    {
        await using var connection = new NpgsqlConnection(environment.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT current_database()", connection);
        Assert.StartsWith("queue_", (string)(await command.ExecuteScalarAsync())!, StringComparison.Ordinal);

        await using var redis = await ConnectionMultiplexer.ConnectAsync(environment.RedisConnectionString);
        await redis.GetDatabase().PingAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Disposing_the_fixture_drops_the_database_and_stops_redis()
    {
        var other = new ServiceTestEnvironment();
        await other.InitializeAsync();
        var database = new NpgsqlConnectionStringBuilder(other.DatabaseConnectionString).Database;
        var redis = other.Redis;

        await other.DisposeAsync();

        Assert.False(redis.IsRunning);
        await using var connection = new NpgsqlConnection(other.Postgres.AdminConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname = $1", connection)
        {
            Parameters = { new() { Value = database } },
        };
        Assert.Equal(0L, (long)(await command.ExecuteScalarAsync())!);
    }
}

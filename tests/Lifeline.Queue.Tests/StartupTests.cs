using Microsoft.Extensions.DependencyInjection;
using Lifeline.Queue.V1;
using Lifeline.ServiceDefaults.Postgres;
using Lifeline.Testing;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>Starting on a fresh database, and the store's transient-abort handling.</summary>
public sealed class StartupTests(ServiceTestEnvironment env) : IClassFixture<ServiceTestEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_queue_without_a_registry_address_runs_no_outcome_reporter_and_renews_no_term_for_it()
    {
        var database = await env.Postgres.CreateDatabaseAsync("queue_no_registry");
        await using var instance = await QueueEnvironment.StartQueueAsync(database, env.RedisConnectionString);
        Assert.Empty(instance.App.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<Reporting.OutcomeReporter>());
        Assert.Null(instance.App.Services.GetKeyedService<Lifeline.ServiceDefaults.Leadership.LeaderElection>(Reporting.OutcomeReporter.Role));

        // The instance serves; no term of the reporter's role is ever written (an election would have claimed at once).
        var type = NewType("no-registry");
        await instance.Client().EnqueueAsync(Spec(type));
        await Task.Delay(TimeSpan.FromSeconds(2));
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var roles = new NpgsqlCommand("SELECT count(*) FROM lifeline_leaders WHERE name = @role", connection);
        roles.Parameters.AddWithValue("role", Reporting.OutcomeReporter.Role);
        Assert.Equal(0L, await roles.ExecuteScalarAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Three_instances_starting_at_once_on_an_empty_database_migrate_it_once_and_all_serve()
    {
        var database = await env.Postgres.CreateDatabaseAsync("queue_migrate");
        var instances = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => QueueEnvironment.StartQueueAsync(database, env.RedisConnectionString)));
        try
        {
            await using var connection = new NpgsqlConnection(database);
            await connection.OpenAsync();
            await using var count = new NpgsqlCommand("SELECT count(*), count(DISTINCT \"MigrationId\") FROM \"__EFMigrationsHistory\"", connection);
            await using (var reader = await count.ExecuteReaderAsync())
            {
                await reader.ReadAsync();
                await using var db = new Data.QueueDbContext(new DbContextOptionsBuilder<Data.QueueDbContext>().UseNpgsql(database).Options);
                var migrations = db.Database.GetMigrations().Count();
                Assert.Equal(migrations, reader.GetInt64(0)); // every migration applied, none twice
                Assert.Equal(migrations, reader.GetInt64(1));
            }

            var type = NewType("startup");
            foreach (var instance in instances)
            {
                await instance.Client().EnqueueAsync(Spec(type));
            }
            Assert.Equal(3, (await instances[2].Client().LeaseAsync("w", type, max: 10)).Count);
        }
        finally
        {
            foreach (var instance in instances)
            {
                await instance.DisposeAsync();
            }
            await env.Postgres.DropDatabaseAsync(database);
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Deadlocked_transactions_are_retried_until_both_succeed()
    {
        var database = await env.Postgres.CreateDatabaseAsync("queue_deadlock");
        try
        {
            await using (var setup = new NpgsqlConnection(database))
            {
                await setup.OpenAsync();
                await using var create = new NpgsqlCommand("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 0), (2, 0);", setup);
                await create.ExecuteNonQueryAsync();
            }
            var attempts = 0;
            using var bothLocked = new Barrier(2);
            // Each transfer locks the two rows in opposite order; the first attempts meet at a barrier, so
            // PostgreSQL must detect a deadlock (40P01) and abort one of them.
            async Task<int> Transfer(int first, int second) => await SerializationRetry.RunAsync(async ct =>
            {
                var attempt = Interlocked.Increment(ref attempts);
                await using var connection = new NpgsqlConnection(database);
                await connection.OpenAsync(ct);
                await using var tx = await connection.BeginTransactionAsync(ct);
                await using (var a = new NpgsqlCommand($"UPDATE accounts SET balance = balance + 1 WHERE id = {first}", connection, tx))
                {
                    await a.ExecuteNonQueryAsync(ct);
                }
                if (attempt <= 2)
                {
                    bothLocked.SignalAndWait(TimeSpan.FromSeconds(10), ct);
                }
                await using (var b = new NpgsqlCommand($"UPDATE accounts SET balance = balance + 1 WHERE id = {second}", connection, tx))
                {
                    await b.ExecuteNonQueryAsync(ct);
                }
                await tx.CommitAsync(ct);
                return attempt;
            }, CancellationToken.None);

            await Task.WhenAll(Task.Run(() => Transfer(1, 2)), Task.Run(() => Transfer(2, 1)));

            Assert.True(attempts >= 3, "one of the transfers must have been retried");
            await using var check = new NpgsqlConnection(database);
            await check.OpenAsync();
            await using var sum = new NpgsqlCommand("SELECT sum(balance) FROM accounts", check);
            Assert.Equal(4L, await sum.ExecuteScalarAsync()); // both transfers applied exactly once
        }
        finally
        {
            await env.Postgres.DropDatabaseAsync(database);
        }
    }
}

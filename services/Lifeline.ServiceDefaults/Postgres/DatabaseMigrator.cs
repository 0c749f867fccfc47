using Lifeline.ServiceDefaults.Leadership;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>
/// Applies a service's checked-in EF Core migrations at start. Several instances may start at once:
/// a PostgreSQL advisory lock, held on its own connection for the duration, lets exactly one of them
/// migrate while the others wait and then find nothing left to do (a mutex around one piece of work, not a
/// leader: the one place a service uses an advisory lock besides the per-pass ones it documents). It also creates
/// <c>lifeline_leaders</c>, the table of every leader election (<see cref="LeadershipTable"/>).
/// </summary>
public sealed partial class DatabaseMigrator<TContext>(
    IServiceProvider services, NpgsqlDataSource dataSource, ILogger<DatabaseMigrator<TContext>> logger) : IHostedService
    where TContext : DbContext
{
    // Any constant works as long as every service uses its own database; it only serializes migrators.
    private const long MigrationLockKey = 0x4c_69_66_65_6c_69_6e_65; // "Lifeline"

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var lockConnection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using (var acquire = new NpgsqlCommand("SELECT pg_advisory_lock(@key)", lockConnection))
        {
            acquire.Parameters.AddWithValue("key", MigrationLockKey);
            await acquire.ExecuteNonQueryAsync(cancellationToken);
        }
        try
        {
            await using var scope = services.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<TContext>();
            LogMigrating(logger, typeof(TContext).Name);
            await db.Database.MigrateAsync(cancellationToken);
            // Shared by every service, outside its EF model: the roles of its leader elections.
            await LeadershipTable.EnsureAsync(lockConnection, cancellationToken);
        }
        finally
        {
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", lockConnection);
            release.Parameters.AddWithValue("key", MigrationLockKey);
            await release.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 9101, Level = LogLevel.Information, Message = "Bringing the schema of {Context} up to date")]
    private static partial void LogMigrating(ILogger logger, string context);
}

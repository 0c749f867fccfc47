using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.Options;
using Microsoft.Extensions.Options;
using Lifeline.ServiceDefaults.Hosting;
using Npgsql;

namespace Lifeline.Registry.Maintenance;

/// <summary>
/// Removes what is no longer worth keeping: closed circuit breakers unchanged for longer than the
/// retention age (a missing breaker reads as closed), and workers offline or deregistered for longer
/// than that (with their statistics, outcomes and Redis entry). Safe on several instances at once.
/// </summary>
public sealed partial class RetentionSweeper(NpgsqlDataSource dataSource, RedisMirror mirror, IOptions<RegistryOptions> options,
    ILogger<RetentionSweeper> logger) : BackgroundLoop(logger)
{
    protected override TimeSpan FirstDelay => options.Value.RetentionInterval;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await SweepAsync(stoppingToken);
        return options.Value.RetentionInterval;
    }

    /// <summary>One sweep. Returns (breakers removed, workers removed).</summary>
    public async Task<(int Breakers, int Workers)> SweepAsync(CancellationToken ct)
    {
        var age = options.Value.RetentionAge.TotalSeconds;
        int breakers;
        await using (var command = dataSource.CreateCommand(
            "DELETE FROM circuit_breakers WHERE state = 'closed' AND updated_at < now() - make_interval(secs => @age)"))
        {
            command.Parameters.AddWithValue("age", age);
            breakers = await command.ExecuteNonQueryAsync(ct);
        }
        var removed = new List<(string, Guid)>();
        await using (var command = dataSource.CreateCommand("""
            DELETE FROM workers
            WHERE status = 'offline' AND COALESCE(deregistered_at, updated_at) < now() - make_interval(secs => @age)
            RETURNING tenant_id, id
            """))
        {
            command.Parameters.AddWithValue("age", age);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                removed.Add((reader.GetString(0), reader.GetGuid(1)));
            }
        }
        foreach (var (tenant, id) in removed)
        {
            await mirror.RemoveAsync(tenant, id);
        }
        if (breakers > 0 || removed.Count > 0)
        {
            LogSwept(logger, breakers, removed.Count);
        }
        return (breakers, removed.Count);
    }

    [LoggerMessage(EventId = 2401, Level = LogLevel.Information, Message = "Retention removed {Breakers} closed breakers and {Workers} long-offline workers")]
    private static partial void LogSwept(ILogger logger, int breakers, int workers);
}

using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>Conventions the registry scenarios share.</summary>
internal static class RegistryScenarios
{
    /// <summary>Names of the fleet's workers start with this; the detection scenario's workers do not.</summary>
    public const string FleetPrefix = "fleet-";

    /// <summary>
    /// The registry's HeartbeatFlushInterval (its default): beats seen are written to PostgreSQL in one
    /// statement this often, so a window's writes are complete this long after its last beat.
    /// </summary>
    public static readonly TimeSpan FlushInterval = TimeSpan.FromSeconds(5);

    /// <summary>Starts watching the tenant's workers rows in PostgreSQL, when this run started the registry.</summary>
    public static async Task<PostgresActivity.Watch?> WatchPostgresAsync(RegistryContext context, CancellationToken ct) =>
        context.Postgres is { } postgres ? await postgres.StartAsync(ct) : null;

    /// <summary>
    /// The PostgreSQL writes seen by <paramref name="watch"/>, one flush interval (and a margin) from now, so the
    /// flush of the window's last beats is included.
    /// </summary>
    public static async Task<PostgresWrites?> PostgresWritesAsync(PostgresActivity.Watch? watch, CancellationToken ct)
    {
        if (watch is null)
        {
            return null;
        }

        await Task.Delay(FlushInterval + TimeSpan.FromSeconds(0.5), ct);
        return await watch.StopAsync(ct);
    }
}

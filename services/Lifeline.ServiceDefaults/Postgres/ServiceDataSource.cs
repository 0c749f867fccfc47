using System.Data.Common;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>Builds a service's <see cref="NpgsqlDataSource"/> with the settings its hot paths rely on.</summary>
public static class ServiceDataSource
{
    /// <summary>The DI key of a service's hot-path data source (<see cref="CreateHotPath"/>).</summary>
    public const string HotPathKey = "hot-path";

    /// <summary>Longest wait to open a connection, including the wait for a free one in the pool (seconds).</summary>
    public const int ConnectTimeoutSeconds = 10;

    /// <summary>Longest a single statement may run before it is cancelled (seconds).</summary>
    public const int CommandTimeoutSeconds = 30;

    /// <summary>How long after a cancellation request the connection is given up as broken (milliseconds).</summary>
    public const int CancellationTimeoutMs = 2000;

    /// <summary>Idle connections are probed this often (seconds), so a dead server is noticed before a call uses it.</summary>
    public const int KeepAliveSeconds = 15;

    public static NpgsqlDataSource Create(string connectionString, ILoggerFactory loggerFactory) =>
        new NpgsqlDataSourceBuilder(Settings(connectionString).ConnectionString).UseLoggerFactory(loggerFactory).Build();

    /// <summary>
    /// A data source for a service's hot statements: the same settings, and every prepared statement planned
    /// once, generically (<c>plan_cache_mode = force_generic_plan</c>), instead of PostgreSQL re-planning it for
    /// each call's values — which it keeps doing for large CTE statements whose custom plans look cheaper.
    /// Only for statements whose generic plan is known to be good at any table size (a scale test proves it):
    /// equality on indexed columns, literal states matching the partial indexes' predicates — and that leave no
    /// session state behind.
    /// </summary>
    /// <remarks>Registered as a keyed service under <see cref="HotPathKey"/>; a scale test of the service proves its plans.</remarks>
    public static NpgsqlDataSource CreateHotPath(string connectionString, ILoggerFactory loggerFactory)
    {
        var settings = Settings(connectionString);
        settings.Options = $"{settings.Options} -c plan_cache_mode=force_generic_plan".Trim();
        // Hot statements leave no session state behind (no SET, no session advisory lock): skip the three reset
        // statements (RESET ALL, SET SESSION AUTHORIZATION DEFAULT, pg_advisory_unlock_all) Npgsql sends on each checkout.
        settings.NoResetOnClose = true;
        settings.ApplicationName = $"{settings.ApplicationName ?? "lifeline"} (hot path)";
        return new NpgsqlDataSourceBuilder(settings.ConnectionString).UseLoggerFactory(loggerFactory).Build();
    }

    /// <summary>
    /// The connection string with every wait bounded: connect and pool wait, each statement, the
    /// cancellation of a statement, and keepalives on idle connections. A value the connection string
    /// sets itself wins, except that no timeout may be 0 (infinite): a service call must never wait forever.
    /// </summary>
    public static NpgsqlConnectionStringBuilder Settings(string connectionString)
    {
        var given = new DbConnectionStringBuilder { ConnectionString = connectionString };
        bool Has(params string[] keys) => keys.Any(given.ContainsKey);
        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        if (!Has("Timeout") || settings.Timeout <= 0)
        {
            settings.Timeout = ConnectTimeoutSeconds;
        }
        if (!Has("Command Timeout", "CommandTimeout") || settings.CommandTimeout <= 0)
        {
            settings.CommandTimeout = CommandTimeoutSeconds;
        }
        if (!Has("Cancellation Timeout", "CancellationTimeout") || settings.CancellationTimeout == 0)
        {
            settings.CancellationTimeout = CancellationTimeoutMs;
        }
        if (!Has("Keepalive", "KeepAlive"))
        {
            settings.KeepAlive = KeepAliveSeconds;
        }
        // No JIT compilation (unless configured): a generic plan over a large table is estimated above
        // jit_above_cost even when it reads a handful of index tuples, and PostgreSQL then spends ~8 ms compiling
        // a statement that runs in 0.1 ms — with 1,000,000 pending tasks that cut a worker's rate from 517 to 80
        // tasks/s. Every statement of the suite is OLTP-sized; none gains from JIT.
        if (!(settings.Options ?? "").Contains("jit", StringComparison.OrdinalIgnoreCase))
        {
            settings.Options = $"{settings.Options} -c jit=off".Trim();
        }
        // The task and heartbeat paths run a handful of large statements over and over: prepare them
        // once per connection instead of parsing and planning them on every call (unless configured).
        if (settings.MaxAutoPrepare == 0)
        {
            settings.MaxAutoPrepare = 64;
            settings.AutoPrepareMinUsages = 2;
        }
        return settings;
    }
}

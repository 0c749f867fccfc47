using System.Data.Common;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>Builds a service's <see cref="NpgsqlDataSource"/> with the settings its hot paths rely on.</summary>
public static class ServiceDataSource
{
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

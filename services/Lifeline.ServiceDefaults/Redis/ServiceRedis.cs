using StackExchange.Redis;

namespace Lifeline.ServiceDefaults.Redis;

/// <summary>Connects a service to Redis with every wait bounded.</summary>
public static class ServiceRedis
{
    /// <summary>Longest wait for a connection to Redis (milliseconds).</summary>
    public const int ConnectTimeoutMs = 3000;

    /// <summary>Longest wait for the answer to one command, queued or sent (milliseconds).</summary>
    public const int CommandTimeoutMs = 3000;

    /// <summary>
    /// The options for <paramref name="connectionString"/>: the service starts (and keeps reconnecting in the
    /// background) while Redis is down, and a command waits at most <see cref="CommandTimeoutMs"/> — also when
    /// it was queued during a disconnect — before it fails with a RedisTimeoutException the error mapping turns
    /// into UNAVAILABLE with RetryInfo. Values the connection string sets itself win.
    /// </summary>
    public static ConfigurationOptions Options(string connectionString)
    {
        var config = ConfigurationOptions.Parse(connectionString);
        config.AbortOnConnectFail = false;
        var given = connectionString.ToLowerInvariant();
        if (!given.Contains("connecttimeout=", StringComparison.Ordinal))
        {
            config.ConnectTimeout = ConnectTimeoutMs;
        }
        if (!given.Contains("synctimeout=", StringComparison.Ordinal))
        {
            config.SyncTimeout = CommandTimeoutMs;
        }
        if (!given.Contains("asynctimeout=", StringComparison.Ordinal))
        {
            config.AsyncTimeout = CommandTimeoutMs;
        }
        // Commands issued while disconnected wait in the backlog for a reconnect, bounded by the timeouts above.
        config.BacklogPolicy = BacklogPolicy.Default;
        return config;
    }

    public static IConnectionMultiplexer Connect(string connectionString) => ConnectionMultiplexer.Connect(Options(connectionString));
}

using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>Builds a service's <see cref="NpgsqlDataSource"/> with the settings its hot paths rely on.</summary>
public static class ServiceDataSource
{
    public static NpgsqlDataSource Create(string connectionString, ILoggerFactory loggerFactory)
    {
        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        // The task and heartbeat paths run a handful of large statements over and over: prepare them
        // once per connection instead of parsing and planning them on every call (unless configured).
        if (settings.MaxAutoPrepare == 0)
        {
            settings.MaxAutoPrepare = 64;
            settings.AutoPrepareMinUsages = 2;
        }
        return new NpgsqlDataSourceBuilder(settings.ConnectionString).UseLoggerFactory(loggerFactory).Build();
    }
}

using Lifeline.AppHost.Supervision;
using Npgsql;

namespace Lifeline.AppHost.Postgres;

/// <summary>Connection strings for the server the suite uses, local or external.</summary>
internal sealed class PostgresConnections(string adminConnectionString)
{
    public string AdminConnectionString { get; } = adminConnectionString;

    /// <summary>The table's URL for the server, without credentials.</summary>
    public string DisplayUrl
    {
        get
        {
            var builder = new NpgsqlConnectionStringBuilder(AdminConnectionString);
            return $"postgres://{builder.Host}:{builder.Port}";
        }
    }

    /// <summary>The admin connection's host, port and TLS settings with the service's role and database.</summary>
    public string ForService(DatabaseGrant grant) =>
        new NpgsqlConnectionStringBuilder(AdminConnectionString)
        {
            Username = grant.Role,
            Password = grant.Password,
            Database = grant.Database,
        }.ConnectionString;

    public Task<HealthResult> CheckHealthAsync(CancellationToken cancellationToken) => PingAsync(AdminConnectionString, cancellationToken);

    /// <summary>Healthy when a fresh (unpooled) connection answers <c>SELECT 1</c>.</summary>
    public static async Task<HealthResult> PingAsync(string connectionString, CancellationToken cancellationToken)
    {
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, Timeout = 3 };
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return HealthResult.Healthy;
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            return HealthResult.Unhealthy(ex.Message);
        }
    }
}

using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.AppHost.Infrastructure;

/// <summary>A service's login role and the database it owns.</summary>
internal sealed record DatabaseGrant(string Role, string Database, string Password);

/// <summary>
/// Gives each service a login role owning its own database, idempotently: missing roles and databases are
/// created, existing ones get the password from secrets.json and the right owner again. Other roles lose the
/// default CONNECT on it, so a service reaches only its own database.
/// </summary>
internal static class DatabaseProvisioner
{
    public static async Task ProvisionAsync(
        string adminConnectionString, IEnumerable<DatabaseGrant> grants, ILogger logger, CancellationToken cancellationToken)
    {
        var builder = new NpgsqlConnectionStringBuilder(adminConnectionString) { Pooling = false };
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        try
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            foreach (var grant in grants)
            {
                var role = QuoteIdentifier(grant.Role);
                var database = QuoteIdentifier(grant.Database);
                var password = QuoteLiteral(grant.Password);

                // DDL takes no parameters: identifiers are validated lowercase names, the password a quoted literal.
                if (await ExistsAsync(connection, "SELECT 1 FROM pg_roles WHERE rolname = $1", grant.Role, cancellationToken).ConfigureAwait(false))
                {
                    await ExecuteAsync(connection, $"ALTER ROLE {role} WITH LOGIN PASSWORD {password}", cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await ExecuteAsync(connection, $"CREATE ROLE {role} WITH LOGIN PASSWORD {password}", cancellationToken).ConfigureAwait(false);
                    logger.LogInformation("Created PostgreSQL role {Role}", grant.Role);
                }

                if (await ExistsAsync(connection, "SELECT 1 FROM pg_database WHERE datname = $1", grant.Database, cancellationToken).ConfigureAwait(false))
                {
                    await ExecuteAsync(connection, $"ALTER DATABASE {database} OWNER TO {role}", cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await ExecuteAsync(connection, $"CREATE DATABASE {database} OWNER {role}", cancellationToken).ConfigureAwait(false);
                    logger.LogInformation("Created database {Database} owned by {Role}", grant.Database, grant.Role);
                }

                await ExecuteAsync(connection, $"REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC", cancellationToken).ConfigureAwait(false);
            }
        }
        catch (PostgresException ex)
        {
            throw new AppHostException(
                $"Provisioning the services' roles and databases on {builder.Host}:{builder.Port} as '{builder.Username}' failed: " +
                $"{ex.MessageText} (SQLSTATE {ex.SqlState}). The admin role needs CREATEROLE and CREATEDB.", ex);
        }
        catch (NpgsqlException ex)
        {
            throw new AppHostException($"Could not reach PostgreSQL at {builder.Host}:{builder.Port} as '{builder.Username}': {ex.Message}", ex);
        }
    }

    private static async Task<bool> ExistsAsync(NpgsqlConnection connection, string sql, string name, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection) { Parameters = { new() { Value = name } } };
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string QuoteIdentifier(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    private static string QuoteLiteral(string value) => "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";
}

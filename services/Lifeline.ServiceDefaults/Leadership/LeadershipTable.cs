using Npgsql;
using NpgsqlTypes;

namespace Lifeline.ServiceDefaults.Leadership;

/// <summary>Who holds a named role according to <c>lifeline_leaders</c>.</summary>
/// <param name="Current">Whether the term is still running (not expired, not resigned).</param>
public sealed record LeaderRecord(string Name, string Holder, long Term, DateTime ElectedAt, DateTime ExpiresAt, bool Current);

/// <summary>
/// The one table behind every "only one instance does this" in a service's database (River's <c>river_leader</c>):
/// a row per named role with its holder, its term (strictly increasing per role: every new holder, and a holder whose
/// term expired, gets the next one) and when the term expires. Taking and keeping a role is one guarded statement;
/// writes that must come from the current holder only are fenced by <see cref="LeaderTerm.Fence"/>. The table is
/// created by <see cref="Postgres.DatabaseMigrator{TContext}"/> in every service database.
/// </summary>
public static class LeadershipTable
{
    /// <summary>The table's definition (idempotent).</summary>
    public const string Schema = """
        CREATE TABLE IF NOT EXISTS lifeline_leaders (
            name text PRIMARY KEY,
            holder text NOT NULL,
            term bigint NOT NULL CHECK (term > 0),
            elected_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """;

    // Free (expired or resigned) or held by the same holder: take it. The term carries on only while the caller
    // renews the term it holds before it expires; anything else starts the next term.
    private const string ClaimSql = """
        INSERT INTO lifeline_leaders AS l (name, holder, term, elected_at, expires_at)
        VALUES (@name, @holder, 1, now(), now() + @ttl)
        ON CONFLICT (name) DO UPDATE SET
            term = CASE WHEN l.holder = excluded.holder AND l.term = @term AND l.expires_at > now() THEN l.term ELSE l.term + 1 END,
            elected_at = CASE WHEN l.holder = excluded.holder AND l.term = @term AND l.expires_at > now() THEN l.elected_at ELSE now() END,
            holder = excluded.holder,
            expires_at = excluded.expires_at
        WHERE l.expires_at <= now() OR l.holder = excluded.holder
        RETURNING term, elected_at
        """;

    /// <summary>Creates the table if it is missing.</summary>
    public static async Task EnsureAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(Schema, connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// Takes <paramref name="name"/> for <paramref name="holder"/> for <paramref name="ttl"/> when it is free or already
    /// the holder's, or renews <paramref name="term"/>; returns the term held now, or null when another holder's term runs.
    /// </summary>
    public static async Task<(long Term, DateTime ElectedAt)?> ClaimAsync(
        NpgsqlDataSource dataSource, string name, string holder, long term, TimeSpan ttl, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(ClaimSql);
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("holder", holder);
        command.Parameters.AddWithValue("term", term);
        command.Parameters.AddWithValue("ttl", NpgsqlDbType.Interval, ttl);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? (reader.GetInt64(0), reader.GetDateTime(1)) : null;
    }

    /// <summary>Ends <paramref name="term"/> at once (if it is still the holder's), so another instance can take the role now.</summary>
    public static async Task<bool> ResignAsync(NpgsqlDataSource dataSource, string name, string holder, long term, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            "UPDATE lifeline_leaders SET expires_at = now() WHERE name = @name AND holder = @holder AND term = @term AND expires_at > now()");
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("holder", holder);
        command.Parameters.AddWithValue("term", term);
        return await command.ExecuteNonQueryAsync(ct) == 1;
    }

    /// <summary>Removes a role that has ended for good (one held only for the life of a piece of work), if the holder still has it.</summary>
    public static async Task ForgetAsync(NpgsqlDataSource dataSource, string name, string holder, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("DELETE FROM lifeline_leaders WHERE name = @name AND holder = @holder");
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("holder", holder);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The role's row (its last term, running or not), or null when it was never taken.</summary>
    public static async Task<LeaderRecord?> ReadAsync(NpgsqlDataSource dataSource, string name, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            "SELECT holder, term, elected_at, expires_at, expires_at > clock_timestamp() FROM lifeline_leaders WHERE name = @name");
        command.Parameters.AddWithValue("name", name);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct)
            ? new LeaderRecord(name, reader.GetString(0), reader.GetInt64(1), reader.GetDateTime(2), reader.GetDateTime(3), reader.GetBoolean(4))
            : null;
    }
}

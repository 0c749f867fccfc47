using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Lifeline.Backup.Engine;

/// <summary>One table's row count and content digest.</summary>
public sealed record TableChecksum(string Table, long RowCount, string Checksum);

/// <summary>What a backup records about the database at its point in time.</summary>
public sealed record DatabaseState(
    IReadOnlyList<TableChecksum> Tables, string SchemaFingerprint, string? SchemaVersion, string ServerVersion);

/// <summary>
/// Reads a database's state: per-table row counts and content checksums, a fingerprint of its table and
/// column definitions, its latest EF Core migration and server version. Run inside a transaction that
/// imported a snapshot, it describes exactly the moment that snapshot was taken.
/// </summary>
public static class DatabaseInspector
{
    public const string Publication = "lifeline_backup";

    private const string UserTables = """
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
        ORDER BY 1, 2
        """;

    /// <summary>
    /// Row count and an order-independent digest per table: the rows' text forms are hashed (md5) and the
    /// two 64-bit halves of the hashes summed, so no sort and no large aggregate is needed.
    /// </summary>
    public static async Task<DatabaseState> ReadStateAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, CancellationToken ct)
    {
        var tables = new List<(string Schema, string Name)>();
        await using (var list = new NpgsqlCommand(UserTables, connection, tx))
        await using (var reader = await list.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                tables.Add((reader.GetString(0), reader.GetString(1)));
            }
        }

        var checksums = new List<TableChecksum>(tables.Count);
        foreach (var (schema, name) in tables)
        {
            var sql = $"""
                SELECT count(*),
                       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text,
                       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text
                FROM (SELECT md5(t::text) AS h FROM {Quote(schema)}.{Quote(name)} AS t) AS rows
                """;
            await using var command = new NpgsqlCommand(sql, connection, tx);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            var count = reader.GetInt64(0);
            var digest = Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes($"{count}:{reader.GetString(1)}:{reader.GetString(2)}")));
            checksums.Add(new TableChecksum($"{schema}.{name}", count, digest));
        }

        var fingerprint = await ReadSchemaFingerprintAsync(connection, tx, ct);
        var hasHistory = await ScalarAsync<bool>(connection, tx, "SELECT to_regclass('public.\"__EFMigrationsHistory\"') IS NOT NULL", ct);
        string? version = null;
        if (hasHistory)
        {
            await using var command = new NpgsqlCommand("SELECT max(\"MigrationId\") FROM public.\"__EFMigrationsHistory\"", connection, tx);
            version = await command.ExecuteScalarAsync(ct) as string;
        }
        var server = await ScalarAsync<string>(connection, tx, "SELECT current_setting('server_version')", ct);
        return new DatabaseState(checksums, fingerprint, version, server);
    }

    /// <summary>Digest of every user table's column definitions: changes with DDL, not with data.</summary>
    public static Task<string> ReadSchemaFingerprintAsync(NpgsqlConnection connection, CancellationToken ct) =>
        ReadSchemaFingerprintAsync(connection, null, ct);

    private static Task<string> ReadSchemaFingerprintAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, CancellationToken ct) =>
        ScalarAsync<string>(connection, tx, """
            SELECT md5(coalesce(string_agg(n.nspname || '.' || c.relname || '.' || a.attnum || '.' || a.attname || ':' ||
                       format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull::text || ':' || a.attgenerated::text,
                       ',' ORDER BY n.nspname, c.relname, a.attnum), ''))
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
            """, ct);

    /// <summary>
    /// <c>setval</c> statements restoring every sequence's current value. Sequences are not transactional and
    /// logical decoding does not carry them, so their values are read when a change backup ends; a restored
    /// sequence is therefore at or beyond the value it had at the backup's point — never behind it.
    /// </summary>
    public static async Task<IReadOnlyList<string>> SequenceStatementsAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        var sequences = new List<string>();
        await using (var list = new NpgsqlCommand("""
            SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1
            """, connection))
        await using (var reader = await list.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                sequences.Add(reader.GetString(0));
            }
        }
        var statements = new List<string>(sequences.Count);
        foreach (var sequence in sequences)
        {
            await using var command = new NpgsqlCommand($"SELECT last_value, is_called FROM {sequence}", connection);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            var value = reader.GetInt64(0).ToString(CultureInfo.InvariantCulture);
            statements.Add($"SELECT pg_catalog.setval({ChangeSql.Literal(sequence)}, {value}, {(reader.GetBoolean(1) ? "true" : "false")})");
        }
        return statements;
    }

    /// <summary>
    /// Makes every table's changes decodable: the publication over all tables, and REPLICA IDENTITY FULL for
    /// tables without a primary key or replica identity index (otherwise their updates and deletes could not
    /// be identified — and PostgreSQL would refuse them while the publication exists).
    /// </summary>
    public static async Task PrepareChangeCaptureAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        var withoutKey = new List<string>();
        await using (var command = new NpgsqlCommand("""
            SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND c.relreplident = 'd'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
              AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
            """, connection))
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                withoutKey.Add(reader.GetString(0));
            }
        }
        foreach (var table in withoutKey)
        {
            await using var alter = new NpgsqlCommand($"ALTER TABLE {table} REPLICA IDENTITY FULL", connection);
            await alter.ExecuteNonQueryAsync(ct);
        }
        if (!await ScalarAsync<bool>(connection, null, $"SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{Publication}')", ct))
        {
            try
            {
                await using var create = new NpgsqlCommand($"CREATE PUBLICATION {Publication} FOR ALL TABLES", connection);
                await create.ExecuteNonQueryAsync(ct);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.DuplicateObject)
            {
                // created concurrently by another instance
            }
        }
    }

    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection, tx);
        return (T)(await command.ExecuteScalarAsync(ct))!;
    }
}

using System.IO.Compression;
using System.Text;
using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;
using Npgsql;

namespace Lifeline.Backup.Restore;

/// <summary>
/// Rebuilds a backup's database in a new database: pg_restore of the chain's full backup, then every change
/// backup's statements in order, in one transaction with <c>session_replication_role = replica</c> (as
/// PostgreSQL's own logical replication applies changes: no user triggers, no foreign-key re-checks of rows
/// that were consistent at the source), then the recorded sequence values.
/// </summary>
public sealed class ChainRestorer(BackupCatalog catalog, BackupFiles files, PgTools pg)
{
    private const int BatchSize = 500;

    /// <summary>Checks the sha256 of every file of the chain; the first that fails (or is missing) is returned.</summary>
    public async Task<BackupEntity?> FirstCorruptAsync(IReadOnlyList<BackupEntity> chain, ProgressSink progress, CancellationToken ct)
    {
        for (var i = 0; i < chain.Count; i++)
        {
            await progress(new BackupProgress("verify-files", 2 + 8 * i / chain.Count, chain[i].SizeBytes, $"sha256 of backup {chain[i].Id}"));
            if (await files.Sha256Async(chain[i].FileName, ct) != chain[i].Sha256)
            {
                return chain[i];
            }
        }
        return null;
    }

    /// <summary>The chain of <paramref name="backup"/> with every file's checksum checked, or FAILED_PRECONDITION <c>BACKUP_CORRUPT</c>.</summary>
    public async Task<IReadOnlyList<BackupEntity>> VerifiedChainAsync(BackupEntity backup, ProgressSink progress, CancellationToken ct)
    {
        if (backup.Status != BackupKinds.Completed)
        {
            throw new PreconditionFailedException("BACKUP_NOT_COMPLETED", $"Backup {backup.Id} is {backup.Status}, not completed.");
        }
        var chain = await catalog.ChainAsync(backup, ct);
        if (await FirstCorruptAsync(chain, progress, ct) is { } corrupt)
        {
            var e = new PreconditionFailedException("BACKUP_CORRUPT",
                $"Backup {corrupt.Id}{(corrupt.Id == backup.Id ? "" : $", which {backup.Id} depends on,")} fails its sha256 checksum (file missing or changed); it cannot be restored.");
            e.Metadata["backup_id"] = corrupt.Id.ToString();
            throw e;
        }
        return chain;
    }

    /// <summary>Creates <paramref name="database"/> next to the target and restores the chain into it; returns its state.</summary>
    public async Task<DatabaseState> RestoreIntoAsync(BackupTarget target, IReadOnlyList<BackupEntity> chain, string database,
        ProgressSink progress, CancellationToken ct)
    {
        await using (var maintenance = new NpgsqlConnection(target.MaintenanceConnectionString))
        {
            await maintenance.OpenAsync(ct);
            await using var owner = new NpgsqlCommand(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = @d", maintenance);
            owner.Parameters.AddWithValue("d", target.Database);
            var ownerName = await owner.ExecuteScalarAsync(ct) as string;
            var ownerClause = ownerName is null ? "" : $" OWNER {DatabaseInspector.Quote(ownerName)}";
            await using var create = new NpgsqlCommand($"CREATE DATABASE {DatabaseInspector.Quote(database)} TEMPLATE template0{ownerClause}", maintenance);
            await create.ExecuteNonQueryAsync(ct);
        }

        var connection = target.ConnectionStringFor(database);
        await progress(new BackupProgress("restore", 15, chain[0].SizeBytes, $"pg_restore of full backup {chain[0].Id}"));
        await pg.RestoreAsync(connection, files.PathOf(chain[0].FileName), ct);

        await using var sql = new NpgsqlConnection(connection);
        await sql.OpenAsync(ct);
        if (chain.Count > 1)
        {
            await using var tx = await sql.BeginTransactionAsync(ct);
            await using (var role = new NpgsqlCommand("SET LOCAL session_replication_role = replica", sql, tx))
            {
                await role.ExecuteNonQueryAsync(ct);
            }
            for (var i = 1; i < chain.Count; i++)
            {
                await progress(new BackupProgress("apply-changes", 60 + 25 * i / chain.Count, chain[i].SizeBytes,
                    $"applying {chain[i].ChangeCount} changes of {chain[i].Type} backup {chain[i].Id}"));
                await ApplyAsync(sql, tx, files.PathOf(chain[i].FileName), ct);
            }
            await tx.CommitAsync(ct);
        }
        await progress(new BackupProgress("compare", 88, 0, "per-table checksums of the restored database"));
        return await DatabaseInspector.ReadStateAsync(sql, null, ct);
    }

    private static async Task ApplyAsync(NpgsqlConnection sql, NpgsqlTransaction tx, string path, CancellationToken ct)
    {
        await using var source = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(source, Encoding.UTF8);
        var batch = new NpgsqlBatch(sql, tx);
        try
        {
            string? line;
            while ((line = await reader.ReadLineAsync(ct)) is not null)
            {
                if (line.Length == 0 || line.StartsWith("--", StringComparison.Ordinal))
                {
                    continue;
                }
                batch.BatchCommands.Add(new NpgsqlBatchCommand(line));
                if (batch.BatchCommands.Count >= BatchSize)
                {
                    await batch.ExecuteNonQueryAsync(ct);
                    await batch.DisposeAsync();
                    batch = new NpgsqlBatch(sql, tx);
                }
            }
            if (batch.BatchCommands.Count > 0)
            {
                await batch.ExecuteNonQueryAsync(ct);
            }
        }
        finally
        {
            await batch.DisposeAsync();
        }
    }

    /// <summary>Tables whose row count or checksum differ between what was recorded and what was restored.</summary>
    public static IReadOnlyList<string> Differences(IReadOnlyList<TableChecksum> expected, IReadOnlyList<TableChecksum> actual)
    {
        var restored = actual.ToDictionary(t => t.Table, StringComparer.Ordinal);
        var differences = new List<string>();
        foreach (var table in expected)
        {
            if (!restored.Remove(table.Table, out var got))
            {
                differences.Add($"{table.Table}: missing");
            }
            else if (got.RowCount != table.RowCount || got.Checksum != table.Checksum)
            {
                differences.Add($"{table.Table}: {got.RowCount} rows/{got.Checksum[..8]} restored, {table.RowCount} rows/{table.Checksum[..8]} recorded");
            }
        }
        differences.AddRange(restored.Keys.Select(t => $"{t}: not in the backup"));
        return differences;
    }

    /// <summary>Drops a database (disconnecting anyone in it); quietly when it does not exist.</summary>
    public static async Task DropDatabaseAsync(BackupTarget target, string database)
    {
        await using var maintenance = new NpgsqlConnection(target.MaintenanceConnectionString);
        await maintenance.OpenAsync(CancellationToken.None);
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {DatabaseInspector.Quote(database)} WITH (FORCE)", maintenance);
        await drop.ExecuteNonQueryAsync(CancellationToken.None);
    }
}

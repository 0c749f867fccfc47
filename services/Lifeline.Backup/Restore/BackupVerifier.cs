using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.Backup.Restore;

/// <summary>
/// Proves a backup: the sha256 of every file of its chain, then a restore drill into a scratch database
/// compared table by table with the checksums recorded at backup time. The verdict is stored on the backup.
/// </summary>
public sealed partial class BackupVerifier(BackupCatalog catalog, TargetDirectory targets, ChainRestorer restorer, ILogger<BackupVerifier> logger)
{
    public async Task<BackupEntity> VerifyAsync(Guid backupId, ProgressSink progress, CancellationToken ct)
    {
        var backup = await catalog.GetAsync(backupId, ct);
        if (backup.Status != BackupKinds.Completed)
        {
            throw new PreconditionFailedException("BACKUP_NOT_COMPLETED", $"Backup {backup.Id} is {backup.Status}; only completed backups can be verified.");
        }
        var target = targets.Get(backup.Target);
        var chain = await catalog.ChainAsync(backup, ct);

        var (passed, message) = await DrillAsync(target, backup, chain, progress, ct);
        await catalog.SetVerdictAsync(backup.Id, passed, message, CancellationToken.None);
        LogVerdict(logger, backup.Id, passed, message);
        await progress(new BackupProgress("done", 100, 0, message));
        return await catalog.GetAsync(backup.Id, CancellationToken.None);
    }

    private async Task<(bool Passed, string Message)> DrillAsync(BackupTarget target, BackupEntity backup, IReadOnlyList<BackupEntity> chain,
        ProgressSink progress, CancellationToken ct)
    {
        if (await restorer.FirstCorruptAsync(chain, progress, ct) is { } corrupt)
        {
            return (false, $"checksum mismatch: the file of backup {corrupt.Id} is missing or does not match its recorded sha256");
        }
        var scratch = target.DerivedDatabaseName("v", Guid.NewGuid());
        try
        {
            var state = await restorer.RestoreIntoAsync(target, chain, scratch, progress, ct);
            var differences = ChainRestorer.Differences(BackupCatalog.Tables(backup), state.Tables);
            return differences.Count == 0
                ? (true, $"restore drill of {chain.Count} file(s) reproduced all {state.Tables.Count} tables ({state.Tables.Sum(t => t.RowCount)} rows)")
                : (false, "restore drill differs: " + string.Join("; ", differences));
        }
        catch (Exception ex) when (ex is PgToolException or Npgsql.PostgresException or InvalidDataException)
        {
            return (false, "restore drill failed: " + ex.Message);
        }
        finally
        {
            await ChainRestorer.DropDatabaseAsync(target, scratch);
        }
    }

    [LoggerMessage(EventId = 5007, Level = LogLevel.Information, Message = "Verified backup {BackupId}: passed {Passed}, {Message}")]
    private static partial void LogVerdict(ILogger logger, Guid backupId, bool passed, string message);
}

using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Restore;
using Lifeline.Backup.Targets;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Backup.Maintenance;

/// <summary>
/// Cleans up after backups and restores whose instance died: a <c>running</c> row whose target lock nobody
/// holds is marked <c>failed</c> and its file removed; leftover <c>.partial</c> files of anything not running are
/// deleted; a restore's half-built database is dropped. Runs at start and on every scheduler tick.
/// </summary>
public sealed partial class StaleRunSweeper(
    IDbContextFactory<BackupDbContext> contexts, BackupCatalog catalog, TargetLocks locks, BackupFiles files, TargetDirectory targets,
    ILogger<StaleRunSweeper> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => SweepAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task SweepAsync(CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var runningBackups = await db.Backups.AsNoTracking().Where(b => b.Status == BackupKinds.Running).ToListAsync(ct);
        var runningRestores = await db.RestoreRuns.AsNoTracking().Where(r => r.Status == BackupKinds.Running).ToListAsync(ct);
        var live = new HashSet<Guid>();
        foreach (var target in runningBackups.Select(b => b.Target).Concat(runningRestores.Select(r => r.Target)).Distinct())
        {
            await using var held = await locks.TryAcquireAsync(target, ct);
            if (held is null)
            {
                // Someone is working on this target right now.
                live.UnionWith(runningBackups.Where(b => b.Target == target).Select(b => b.Id));
                continue;
            }
            foreach (var backup in runningBackups.Where(b => b.Target == target))
            {
                files.Delete(backup.FileName);
                await catalog.MarkFailedAsync(backup.Id, "interrupted: the service stopped before the backup completed");
                LogAbandonedBackup(logger, backup.Id, target);
            }
            foreach (var run in runningRestores.Where(r => r.Target == target))
            {
                if (run.RestoredDatabase is { } restored && targets.Contains(target) && restored != targets.Get(target).Database)
                {
                    await ChainRestorer.DropDatabaseAsync(targets.Get(target), restored);
                }
                await db.RestoreRuns.Where(r => r.Id == run.Id && r.Status == BackupKinds.Running).ExecuteUpdateAsync(s => s
                    .SetProperty(r => r.Status, BackupKinds.Failed)
                    .SetProperty(r => r.CompletedAt, DateTime.UtcNow)
                    .SetProperty(r => r.Error, "interrupted: the service stopped before the restore completed"), ct);
                LogAbandonedRestore(logger, run.Id, target);
            }
        }

        foreach (var partial in files.PartialFiles())
        {
            var stem = Path.GetFileName(partial).Split('.')[0];
            if (!Guid.TryParseExact(stem, "N", out var id) || !live.Contains(id))
            {
                files.DeletePartial(partial);
            }
        }
    }

    [LoggerMessage(EventId = 7401, Level = LogLevel.Warning, Message = "Backup {BackupId} of {Target} was abandoned by a stopped instance; marked failed")]
    private static partial void LogAbandonedBackup(ILogger logger, Guid backupId, string target);

    [LoggerMessage(EventId = 7402, Level = LogLevel.Warning, Message = "Restore {RestoreId} of {Target} was abandoned by a stopped instance; marked failed")]
    private static partial void LogAbandonedRestore(ILogger logger, Guid restoreId, string target);
}

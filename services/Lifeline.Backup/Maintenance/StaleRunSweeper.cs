using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Restore;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Backup.Maintenance;

/// <summary>
/// Cleans up after backups and restores whose instance died. A live operation holds its target's lock from
/// before its <c>running</c> row is written until after it is finished, so a <c>running</c> row whose target lock
/// nobody holds is abandoned: it is marked <c>failed</c> and its file removed; a restore's half-built database is
/// dropped; <c>.partial</c> files of anything not live are deleted. Runs at start (before the service serves; a
/// start-up sweep that fails is retried in the background rather than keeping the service down), on every scheduler
/// tick, and (for its target) whenever an operation takes a target's lock.
/// </summary>
public sealed partial class StaleRunSweeper(
    IDbContextFactory<BackupDbContext> contexts, TargetLocks locks, BackupFiles files, TargetDirectory targets,
    ILogger<StaleRunSweeper> logger) : BackgroundLoop(logger)
{
    protected override bool FirstPassAtStart => true;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await SweepAsync(stoppingToken);
        return Done;
    }

    public async Task SweepAsync(CancellationToken ct)
    {
        // The files are listed before the rows are read: an operation writes its running row before its file, so
        // every file listed here has its row by then. Listed after, a backup that started between the two reads
        // would have its file but not its row, and its file would be deleted under it.
        var partials = files.PartialFiles().ToList();
        await using var db = await contexts.CreateDbContextAsync(ct);
        var running = await db.Backups.AsNoTracking().Where(b => b.Status == BackupKinds.Running).Select(b => new { b.Id, b.Target }).ToListAsync(ct);
        var restores = await db.RestoreRuns.AsNoTracking().Where(r => r.Status == BackupKinds.Running).Select(r => new { r.Id, r.Target }).ToListAsync(ct);
        // Abandoned, if at all, are only the runs read here: they were running then, so once their target's lock is free
        // their operation has ended. A run that started since (taking the lock after the look) is not among them.
        var seen = running.Select(b => b.Id).Concat(restores.Select(r => r.Id)).ToHashSet();
        var live = new HashSet<Guid>();
        foreach (var target in running.Select(b => b.Target).Concat(restores.Select(r => r.Target)).Distinct())
        {
            if (await locks.IsHeldAsync(target, ct))
            {
                live.UnionWith(running.Where(b => b.Target == target).Select(b => b.Id));
            }
            else
            {
                await AbandonAsync(target, ct, includeRestores: true, only: seen);
            }
        }
        foreach (var partial in partials)
        {
            var stem = Path.GetFileName(partial).Split('.')[0];
            if (!Guid.TryParseExact(stem, "N", out var id) || !live.Contains(id))
            {
                files.DeletePartial(partial);
            }
        }
    }

    /// <summary>
    /// Fails every <c>running</c> backup (and, with <paramref name="includeRestores"/>, restore) of a target whose lock
    /// is free or held by the caller — either way no live operation owns them (a restore that takes a pre-restore
    /// backup passes false for its own run). Guarded on the status, so a run that completed meanwhile is left alone.
    /// With <paramref name="only"/>, only those runs (a sweep that does not hold the lock names the ones it saw).
    /// </summary>
    public async Task AbandonAsync(string target, CancellationToken ct, bool includeRestores = true, IReadOnlySet<Guid>? only = null)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var backups = await db.Backups.AsNoTracking().Where(b => b.Target == target && b.Status == BackupKinds.Running).ToListAsync(ct);
        foreach (var backup in backups.Where(b => only is null || only.Contains(b.Id)))
        {
            var changed = await db.Backups.Where(b => b.Id == backup.Id && b.Status == BackupKinds.Running).ExecuteUpdateAsync(s => s
                .SetProperty(b => b.Status, BackupKinds.Failed)
                .SetProperty(b => b.Error, "interrupted: the service stopped before the backup completed"), ct);
            if (changed > 0)
            {
                files.Delete(backup.FileName);
                LogAbandonedBackup(logger, backup.Id, target);
            }
        }
        var restores = includeRestores
            ? await db.RestoreRuns.AsNoTracking().Where(r => r.Target == target && r.Status == BackupKinds.Running).ToListAsync(ct)
            : [];
        foreach (var run in restores.Where(r => only is null || only.Contains(r.Id)))
        {
            var changed = await db.RestoreRuns.Where(r => r.Id == run.Id && r.Status == BackupKinds.Running).ExecuteUpdateAsync(s => s
                .SetProperty(r => r.Status, BackupKinds.Failed)
                .SetProperty(r => r.CompletedAt, DateTime.UtcNow)
                .SetProperty(r => r.Error, "interrupted: the service stopped before the restore completed"), ct);
            if (changed > 0 && run.RestoredDatabase is { } restored && targets.Contains(target) && restored != targets.Get(target).Database)
            {
                await ChainRestorer.DropDatabaseAsync(targets.Get(target), restored);
            }
            if (changed > 0)
            {
                LogAbandonedRestore(logger, run.Id, target);
            }
        }
    }

    [LoggerMessage(EventId = 5005, Level = LogLevel.Warning, Message = "Backup {BackupId} of {Target} was abandoned by a stopped instance; marked failed")]
    private static partial void LogAbandonedBackup(ILogger logger, Guid backupId, string target);

    [LoggerMessage(EventId = 5006, Level = LogLevel.Warning, Message = "Restore {RestoreId} of {Target} was abandoned by a stopped instance; marked failed")]
    private static partial void LogAbandonedRestore(ILogger logger, Guid restoreId, string target);
}

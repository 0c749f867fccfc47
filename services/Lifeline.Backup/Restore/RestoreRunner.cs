using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Lifeline.Backup.Telemetry;

namespace Lifeline.Backup.Restore;

/// <summary>The outcome of a restore.</summary>
public sealed record RestoreOutcome(RestoreRunEntity Run, IReadOnlyList<TableChecksum> Tables);

/// <summary>
/// Restores a target to a backup without ever leaving it half-restored: the chain is rebuilt in a new
/// database and checked table by table against the backup's checksums; only then is it switched into place.
/// The switch closes the target to new connections, terminates the open ones (the owning service's pool sees
/// them fail and reconnects), renames the current database away (kept as <c>&lt;db&gt;_old_&lt;id&gt;</c>) and the restored
/// one to the target's name. The old chain's replication slot goes with the old database: the next change
/// backup needs a new full backup.
/// </summary>
public sealed partial class RestoreRunner(
    BackupCatalog catalog, IDbContextFactory<BackupDbContext> contexts, TargetDirectory targets, TargetLocks locks,
    BackupRunner backups, ChainRestorer restorer, Maintenance.StaleRunSweeper sweeper, BackupTelemetry telemetry,
    ILogger<RestoreRunner> logger)
{
    public async Task<RestoreOutcome> RestoreAsync(string targetName, Guid backupId, bool preRestoreBackup,
        ProgressSink progress, CancellationToken ct)
    {
        var target = targets.Get(targetName);
        var backup = await catalog.GetAsync(backupId, ct);
        if (backup.Target != target.Name)
        {
            var e = new PreconditionFailedException("BACKUP_TARGET_MISMATCH",
                $"Backup {backup.Id} is a backup of target '{backup.Target}', not of '{target.Name}'.");
            e.Metadata["backup_target"] = backup.Target;
            throw e;
        }
        await using var held = await locks.AcquireAsync(target.Name, TargetOperation.Restore, ct);

        // Refuse a corrupt chain before anything is written.
        var chain = await restorer.VerifiedChainAsync(backup, progress, ct);

        await sweeper.AbandonAsync(target.Name, ct);
        var run = new RestoreRunEntity
        {
            Id = Guid.NewGuid(),
            Target = target.Name,
            BackupId = backup.Id,
            Status = BackupKinds.Running,
            StartedAt = DateTime.UtcNow,
        };
        await using (var db = await contexts.CreateDbContextAsync(ct))
        {
            db.RestoreRuns.Add(run);
            try
            {
                await db.SaveChangesAsync(ct);
            }
            catch (DbUpdateException ex) when (ex.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
            {
                throw new TargetBusyException("RESTORE_IN_PROGRESS", $"A restore of target '{target.Name}' is already running.");
            }
        }

        var restoredDatabase = target.DerivedDatabaseName("r", run.Id);
        var switched = false;
        using var activity = BackupTelemetry.Source.StartActivity("backup.restore");
        activity?.SetTag(BackupTelemetry.TargetTag, target.Name);
        activity?.SetTag("lifeline.backup.id", backup.Id.ToString());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            if (preRestoreBackup)
            {
                await progress(new BackupProgress("pre-restore-backup", 10, 0, "full backup of the current state"));
                var pre = await backups.CreateLockedAsync(target, BackupKinds.Full, p => progress(p with { Phase = "pre-restore-backup" }), ct);
                run.PreRestoreBackupId = pre.Id;
            }

            run.RestoredDatabase = restoredDatabase;
            var state = await restorer.RestoreIntoAsync(target, chain, restoredDatabase, progress, ct);
            var differences = ChainRestorer.Differences(BackupCatalog.Tables(backup), state.Tables);
            if (differences.Count > 0)
            {
                throw new PreconditionFailedException("RESTORE_MISMATCH",
                    "The restored database differs from the backup, so it was not switched in: " + string.Join("; ", differences));
            }

            await progress(new BackupProgress("switch", 92, 0, $"switching {restoredDatabase} in as {target.Database}"));
            run.ReplacedDatabase = target.DerivedDatabaseName("old", run.Id);
            await SwitchAsync(target, restoredDatabase, run.ReplacedDatabase, ct);
            switched = true;

            run.Status = BackupKinds.Completed;
            run.CompletedAt = DateTime.UtcNow;
            await SaveAsync(run);
            LogRestored(logger, target.Name, backup.Id, run.ReplacedDatabase);
            telemetry.RestoreEnded(target.Name, completed: true, clock.Elapsed, chain.Sum(b => b.SizeBytes));
            await progress(new BackupProgress("done", 100, 0, "restored"));
            return new RestoreOutcome(run, state.Tables);
        }
        catch (Exception ex)
        {
            if (!switched)
            {
                await ChainRestorer.DropDatabaseAsync(target, restoredDatabase);
            }
            run.Status = BackupKinds.Failed;
            run.CompletedAt = DateTime.UtcNow;
            run.Error = ex is OperationCanceledException ? "interrupted: the restore was cancelled" : ex.Message;
            await SaveAsync(run);
            LogRestoreFailed(logger, target.Name, backup.Id, ex);
            telemetry.RestoreEnded(target.Name, completed: false, clock.Elapsed, 0);
            activity?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, ex.GetType().Name);
            throw;
        }
    }

    private async Task SaveAsync(RestoreRunEntity run)
    {
        await using var db = await contexts.CreateDbContextAsync(CancellationToken.None);
        db.RestoreRuns.Update(run);
        await db.SaveChangesAsync(CancellationToken.None);
    }

    private static async Task SwitchAsync(BackupTarget target, string restored, string replaced, CancellationToken ct)
    {
        await using var sql = new NpgsqlConnection(target.MaintenanceConnectionString);
        await sql.OpenAsync(ct);
        async Task Run(string statement)
        {
            await using var command = new NpgsqlCommand(statement, sql);
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        }
        var current = DatabaseInspector.Quote(target.Database);

        // The restored database gets the current one's database-level privileges.
        var grants = new List<string>();
        await using (var acl = new NpgsqlCommand("""
            SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.privilege_type
            FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = @d
            """, sql))
        {
            acl.Parameters.AddWithValue("d", target.Database);
            await using var reader = await acl.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                grants.Add($"GRANT {reader.GetString(1)} ON DATABASE {DatabaseInspector.Quote(restored)} TO {reader.GetString(0)}");
            }
        }
        if (grants.Count > 0)
        {
            await Run($"REVOKE ALL ON DATABASE {DatabaseInspector.Quote(restored)} FROM PUBLIC");
            foreach (var grant in grants)
            {
                await Run(grant);
            }
        }

        // From here on no cancellation: a half-done switch is worse than a late one.
        await Run($"ALTER DATABASE {current} WITH ALLOW_CONNECTIONS false");
        try
        {
            await using (var terminate = new NpgsqlCommand(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = @d AND pid <> pg_backend_pid()", sql))
            {
                terminate.Parameters.AddWithValue("d", target.Database);
                await terminate.ExecuteScalarAsync(CancellationToken.None);
            }
            await RenameWithRetryAsync(sql, target.Database, replaced);
        }
        catch
        {
            await Run($"ALTER DATABASE {current} WITH ALLOW_CONNECTIONS true");
            throw;
        }
        try
        {
            await Run($"ALTER DATABASE {DatabaseInspector.Quote(restored)} RENAME TO {current}");
        }
        catch
        {
            await Run($"ALTER DATABASE {DatabaseInspector.Quote(replaced)} RENAME TO {current}");
            await Run($"ALTER DATABASE {current} WITH ALLOW_CONNECTIONS true");
            throw;
        }
        await Run($"ALTER DATABASE {DatabaseInspector.Quote(replaced)} WITH ALLOW_CONNECTIONS true");

        // The old chain's slots belong to the replaced database now; they would only hold WAL back.
        await using var drop = new NpgsqlCommand("""
            SELECT pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s JOIN pg_database d ON d.oid = s.datoid
            WHERE d.datname = @d AND s.slot_name LIKE @prefix || '%' AND NOT s.active
            """, sql);
        drop.Parameters.AddWithValue("d", replaced);
        drop.Parameters.AddWithValue("prefix", target.SlotPrefix);
        await drop.ExecuteNonQueryAsync(CancellationToken.None);
    }

    /// <summary>Terminated sessions take a moment to leave; RENAME refuses while any is still there.</summary>
    private static async Task RenameWithRetryAsync(NpgsqlConnection sql, string from, string to)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var rename = new NpgsqlCommand($"ALTER DATABASE {DatabaseInspector.Quote(from)} RENAME TO {DatabaseInspector.Quote(to)}", sql);
                await rename.ExecuteNonQueryAsync(CancellationToken.None);
                return;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ObjectInUse && attempt < 50)
            {
                await using var terminate = new NpgsqlCommand(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = @d AND pid <> pg_backend_pid()", sql);
                terminate.Parameters.AddWithValue("d", from);
                await terminate.ExecuteScalarAsync(CancellationToken.None);
                await Task.Delay(100);
            }
        }
    }

    [LoggerMessage(EventId = 5008, Level = LogLevel.Information, Message = "Restored {Target} to backup {BackupId}; the replaced database is kept as {Replaced}")]
    private static partial void LogRestored(ILogger logger, string target, Guid backupId, string replaced);

    [LoggerMessage(EventId = 5009, Level = LogLevel.Warning, Message = "Restore of {Target} to backup {BackupId} failed; the target is unchanged")]
    private static partial void LogRestoreFailed(ILogger logger, string target, Guid backupId, Exception exception);
}

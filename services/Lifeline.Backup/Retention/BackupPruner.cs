using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lifeline.Backup.Retention;

/// <summary>How long backups of one type are kept: the newest <see cref="KeepCount"/> and/or those younger than <see cref="KeepDays"/>.</summary>
public sealed record RetentionRule(string Type, int KeepCount, int KeepDays);

public sealed record RetentionOutcome(IReadOnlyList<Guid> Deleted, IReadOnlyList<Guid> Protected);

/// <summary>Deletes backups — on request or by retention rules — without ever breaking a chain that is kept.</summary>
public sealed partial class BackupPruner(
    BackupCatalog catalog, IDbContextFactory<BackupDbContext> contexts, NpgsqlDataSource catalogDb, TargetDirectory targets,
    TargetLocks locks, BackupFiles files, ILogger<BackupPruner> logger)
{
    /// <summary>Deletes a backup; later backups that depend on it are deleted too with <paramref name="cascade"/>, else refused.</summary>
    public async Task<IReadOnlyList<Guid>> DeleteAsync(Guid id, bool cascade, CancellationToken ct)
    {
        var backup = await catalog.GetAsync(id, ct);
        await using var held = await locks.AcquireAsync(backup.Target, TargetOperation.Deletion, ct);
        await using var db = await contexts.CreateDbContextAsync(ct);
        var all = await db.Backups.AsNoTracking().Where(b => b.Target == backup.Target).ToListAsync(ct);
        var dependents = Descendants(all, id).Where(b => b.Status != BackupKinds.Failed).ToList();
        if (dependents.Count > 0 && !cascade)
        {
            var e = new PreconditionFailedException("BACKUP_HAS_DEPENDENTS",
                $"{dependents.Count} later backup(s) depend on backup {id} (e.g. {dependents[0].Id}); delete them first or pass cascade.");
            e.Metadata["dependents"] = dependents.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw e;
        }
        return await DeleteRowsAsync(backup.Target, [id, .. dependents.Select(d => d.Id)], ct);
    }

    public async Task<RetentionOutcome> ApplyAsync(string? targetName, IReadOnlyList<RetentionRule> rules, bool dryRun, CancellationToken ct)
    {
        var scope = targetName is null ? targets.All : [targets.Get(targetName)];
        var deleted = new List<Guid>();
        var protectedIds = new List<Guid>();
        foreach (var target in scope)
        {
            await using var held = await locks.AcquireAsync(target.Name, TargetOperation.Retention, ct);
            await using var db = await contexts.CreateDbContextAsync(ct);
            var completed = await db.Backups.AsNoTracking()
                .Where(b => b.Target == target.Name && b.Status == BackupKinds.Completed).ToListAsync(ct);
            var (remove, keepProtected) = Plan(completed, rules, DateTime.UtcNow);
            protectedIds.AddRange(keepProtected);
            if (remove.Count > 0 && !dryRun)
            {
                await DeleteRowsAsync(target.Name, remove, ct);
            }
            deleted.AddRange(remove);
        }
        return new RetentionOutcome(deleted, protectedIds);
    }

    /// <summary>
    /// Which backups the rules remove: a backup of a ruled type that is neither among the newest
    /// <c>KeepCount</c> nor younger than <c>KeepDays</c> — unless it is the newest verified full, or a backup
    /// that stays needs it to restore (its full, the incrementals before it).
    /// </summary>
    internal static (List<Guid> Remove, List<Guid> Protected) Plan(IReadOnlyList<BackupEntity> completed, IReadOnlyList<RetentionRule> rules, DateTime now)
    {
        var candidates = new HashSet<Guid>();
        foreach (var rule in rules)
        {
            var ofType = completed.Where(b => b.Type == rule.Type).OrderByDescending(b => b.CompletedAt).ThenByDescending(b => b.EndLsn).ToList();
            for (var i = 0; i < ofType.Count; i++)
            {
                var byCount = rule.KeepCount > 0 && i < rule.KeepCount;
                var byAge = rule.KeepDays > 0 && ofType[i].CompletedAt > now.AddDays(-rule.KeepDays);
                if (!byCount && !byAge)
                {
                    candidates.Add(ofType[i].Id);
                }
            }
        }
        var byId = completed.ToDictionary(b => b.Id);
        var stay = completed.Where(b => !candidates.Contains(b.Id)).Select(b => b.Id).ToHashSet();
        if (completed.Where(b => b.Type == BackupKinds.Full && b.Verification == BackupKinds.Passed)
            .OrderByDescending(b => b.CompletedAt).FirstOrDefault() is { } lastVerifiedFull)
        {
            stay.Add(lastVerifiedFull.Id);
        }
        // Everything a staying backup's restore reads (its parent, its full) stays too, transitively.
        var work = new Queue<Guid>(stay);
        while (work.TryDequeue(out var id))
        {
            foreach (var dependency in new[] { byId[id].ParentId, byId[id].BaseId })
            {
                if (dependency is { } d && byId.ContainsKey(d) && stay.Add(d))
                {
                    work.Enqueue(d);
                }
            }
        }
        return (candidates.Where(id => !stay.Contains(id)).ToList(), candidates.Where(stay.Contains).ToList());
    }

    private static List<BackupEntity> Descendants(List<BackupEntity> all, Guid id)
    {
        var result = new List<BackupEntity>();
        var frontier = new Queue<Guid>([id]);
        while (frontier.TryDequeue(out var current))
        {
            foreach (var child in all.Where(b => b.ParentId == current))
            {
                result.Add(child);
                frontier.Enqueue(child.Id);
            }
        }
        return result;
    }

    /// <summary>Deletes the rows (with failed backups built on them) in one statement, then their files and chain slots.</summary>
    private async Task<IReadOnlyList<Guid>> DeleteRowsAsync(string targetName, IReadOnlyCollection<Guid> ids, CancellationToken ct)
    {
        var removed = new List<(Guid Id, string File, string? Slot)>();
        await using (var command = catalogDb.CreateCommand("""
            WITH RECURSIVE doomed AS (
                SELECT id FROM backups WHERE id = ANY(@ids)
                UNION
                SELECT b.id FROM backups b JOIN doomed d ON b.parent_id = d.id WHERE b.status = 'failed'
            )
            DELETE FROM backups WHERE id IN (SELECT id FROM doomed) RETURNING id, file_name, slot_name
            """))
        {
            command.Parameters.AddWithValue("ids", ids.ToArray());
            try
            {
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    removed.Add((reader.GetGuid(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2)));
                }
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ForeignKeyViolation)
            {
                throw new PreconditionFailedException("BACKUP_HAS_DEPENDENTS", "A backup that depends on these was created meanwhile; nothing was deleted.");
            }
        }
        var target = targets.Contains(targetName) ? targets.Get(targetName) : null;
        foreach (var (id, file, slot) in removed)
        {
            files.Delete(file);
            if (slot is not null && target is not null)
            {
                await DropSlotAsync(target, slot);
            }
            LogDeleted(logger, id, targetName);
        }
        return removed.Select(r => r.Id).ToList();
    }

    private async Task DropSlotAsync(BackupTarget target, string slot)
    {
        try
        {
            await using var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database));
            await sql.OpenAsync(CancellationToken.None);
            await using var drop = new NpgsqlCommand(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = @s AND NOT active", sql);
            drop.Parameters.AddWithValue("s", slot);
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }
        catch (NpgsqlException ex)
        {
            LogSlotNotDropped(logger, slot, ex);
        }
    }

    [LoggerMessage(EventId = 5010, Level = LogLevel.Information, Message = "Deleted backup {BackupId} of {Target}")]
    private static partial void LogDeleted(ILogger logger, Guid backupId, string target);

    [LoggerMessage(EventId = 5011, Level = LogLevel.Warning, Message = "Could not drop replication slot {Slot}; the next full backup drops it")]
    private static partial void LogSlotNotDropped(ILogger logger, string slot, Exception exception);
}

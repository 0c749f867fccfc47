using System.Text.Json;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lifeline.Backup.Catalog;

/// <summary>Reads and writes the backup catalog.</summary>
public sealed class BackupCatalog(IDbContextFactory<BackupDbContext> contexts)
{
    public async Task<BackupEntity> GetAsync(Guid id, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        return await db.Backups.AsNoTracking().SingleOrDefaultAsync(b => b.Id == id, ct)
            ?? throw new NotFoundException("backup", id.ToString());
    }

    /// <summary>The newest completed full backup of a target, or null.</summary>
    public async Task<BackupEntity?> LatestFullAsync(string target, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        return await db.Backups.AsNoTracking()
            .Where(b => b.Target == target && b.Type == BackupKinds.Full && b.Status == BackupKinds.Completed)
            .OrderByDescending(b => b.EndLsn).ThenByDescending(b => b.CompletedAt)
            .FirstOrDefaultAsync(ct);
    }

    /// <summary>The completed backup of a chain that ends latest (the full itself when nothing follows it).</summary>
    public async Task<BackupEntity> LatestInChainAsync(BackupEntity full, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        return await db.Backups.AsNoTracking()
            .Where(b => b.BaseId == full.Id && b.Status == BackupKinds.Completed)
            .OrderByDescending(b => b.EndLsn).ThenByDescending(b => b.CompletedAt)
            .FirstAsync(ct);
    }

    /// <summary>What restoring <paramref name="backup"/> takes, in order: its full, then change backups.</summary>
    public async Task<IReadOnlyList<BackupEntity>> ChainAsync(BackupEntity backup, CancellationToken ct)
    {
        var chain = new List<BackupEntity>();
        var current = backup;
        while (true)
        {
            chain.Add(current);
            if (current.Type == BackupKinds.Full)
            {
                break;
            }
            // A differential carries every change since its full: only the full is needed before it.
            var parentId = current.Type == BackupKinds.Differential ? current.BaseId : current.ParentId;
            current = await GetAsync(parentId ?? throw new InvalidOperationException($"Backup {current.Id} has no parent."), ct);
            if (current.Status != BackupKinds.Completed)
            {
                throw new PreconditionFailedException("BACKUP_CHAIN_BROKEN", $"Backup {current.Id}, which {backup.Id} depends on, is not completed.");
            }
        }
        chain.Reverse();
        return chain;
    }

    /// <summary>The change backups whose contents together cover a chain from its full to <paramref name="latest"/>.</summary>
    public async Task<IReadOnlyList<BackupEntity>> SegmentsSinceFullAsync(BackupEntity latest, CancellationToken ct)
    {
        var segments = new List<BackupEntity>();
        var current = latest;
        while (current.Type != BackupKinds.Full)
        {
            segments.Add(current);
            if (current.Type == BackupKinds.Differential)
            {
                break;
            }
            current = await GetAsync(current.ParentId!.Value, ct);
        }
        segments.Reverse();
        return segments;
    }

    /// <summary>Records a new running backup; a running backup of the target already → ABORTED.</summary>
    public async Task InsertRunningAsync(BackupEntity backup, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        db.Backups.Add(backup);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException ex) when (ex.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            throw new TargetBusyException("BACKUP_IN_PROGRESS", $"A backup of target '{backup.Target}' is already running.");
        }
    }

    public async Task CompleteAsync(BackupEntity backup, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        db.Backups.Update(backup);
        await db.SaveChangesAsync(ct);
    }

    /// <summary>Marks a running backup failed (never a completed one).</summary>
    public async Task MarkFailedAsync(Guid id, string error)
    {
        await using var db = await contexts.CreateDbContextAsync(CancellationToken.None);
        await db.Backups.Where(b => b.Id == id && b.Status == BackupKinds.Running)
            .ExecuteUpdateAsync(s => s.SetProperty(b => b.Status, BackupKinds.Failed)
                .SetProperty(b => b.Error, error.Length > 2000 ? error[..2000] : error), CancellationToken.None);
    }

    public async Task SetVerdictAsync(Guid id, bool passed, string message, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        await db.Backups.Where(b => b.Id == id).ExecuteUpdateAsync(s => s
            .SetProperty(b => b.Verification, passed ? BackupKinds.Passed : BackupKinds.VerificationFailed)
            .SetProperty(b => b.VerifiedAt, DateTime.UtcNow)
            .SetProperty(b => b.VerificationMessage, message.Length > 2000 ? message[..2000] : message), ct);
    }

    public static IReadOnlyList<TableChecksum> Tables(BackupEntity backup) =>
        JsonSerializer.Deserialize<List<TableChecksum>>(backup.TableChecksums) ?? [];

    public static string TablesJson(IReadOnlyList<TableChecksum> tables) => JsonSerializer.Serialize(tables);
}

/// <summary>Another operation holds the target (a backup, restore, retention or deletion, named by the reason): ABORTED (retry later).</summary>
public sealed class TargetBusyException(string reason, string message) : LifelineException(message)
{
    public override global::Grpc.Core.StatusCode Code => global::Grpc.Core.StatusCode.Aborted;
    public override string Reason { get; } = reason;
}

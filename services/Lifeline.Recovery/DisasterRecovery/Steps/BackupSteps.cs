using Grpc.Core;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>What disaster recovery needs of the backup service: a full backup, and a restore from the latest verified backup.</summary>
public interface IBackupGateway
{
    /// <summary>Takes a full backup of <paramref name="databases"/>; returns what was backed up.</summary>
    Task<DrStepOutcome> BackupAsync(IReadOnlyList<string> databases, CancellationToken ct);

    /// <summary>Restores <paramref name="databases"/> from their latest verified backups; returns what was restored.</summary>
    Task<DrStepOutcome> RestoreLatestAsync(IReadOnlyList<string> databases, CancellationToken ct);
}

/// <summary>
/// The backup service through its contract (<c>services:backup:grpc:0</c>). Backup: a full backup of each
/// database. Restore: each database from its newest backup whose restore drill passed (VerifyBackup), with a
/// pre-restore full backup first; the backup service switches the checked copy in. recoverydb is never restored
/// from inside a disaster-recovery run (the run's own record lives there): restore it with
/// <c>BackupService.RestoreBackup</c> directly. Without the backup service configured, both fail and say so.
/// </summary>
public sealed class BackupServiceGateway(SuiteClients clients) : IBackupGateway
{
    public async Task<DrStepOutcome> BackupAsync(IReadOnlyList<string> databases, CancellationToken ct)
    {
        if (!clients.Has("backup"))
        {
            return NotConfigured("back up", databases);
        }
        var backup = clients.Backup;
        var done = new List<string>();
        var failed = new List<string>();
        foreach (var database in databases.Where(d => d != "backupdb"))
        {
            try
            {
                using var call = backup.CreateBackup(new Backup.V1.CreateBackupRequest { Target = database, Type = Backup.V1.BackupType.Full },
                    deadline: DateTime.UtcNow.AddHours(1), cancellationToken: ct);
                Backup.V1.Backup? result = null;
                await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
                {
                    result = message.Backup ?? result;
                }
                if (result is { Status: Backup.V1.BackupStatus.Completed })
                {
                    done.Add($"{database}: full backup {result.BackupId} ({result.SizeBytes / 1048576.0:0.0} MiB)");
                }
                else
                {
                    failed.Add($"{database}: {result?.Error ?? "the backup stream ended without a result"}");
                }
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                failed.Add($"{database}: {e.StatusCode} {e.Status.Detail}");
            }
        }
        return Outcome(done, failed);
    }

    public async Task<DrStepOutcome> RestoreLatestAsync(IReadOnlyList<string> databases, CancellationToken ct)
    {
        if (!clients.Has("backup"))
        {
            return NotConfigured("restore", databases);
        }
        var backup = clients.Backup;
        var done = new List<string>();
        var failed = new List<string>();
        foreach (var database in databases)
        {
            if (database is "recoverydb" or "backupdb")
            {
                failed.Add($"{database}: not restored from inside a disaster-recovery run (it holds the run's own records); use BackupService.RestoreBackup");
                continue;
            }
            try
            {
                var candidates = await backup.ListBackupsAsync(new Backup.V1.ListBackupsRequest
                {
                    Target = database, Status = Backup.V1.BackupStatus.Completed, PageSize = 100,
                }, cancellationToken: ct);
                var verified = candidates.Backups.FirstOrDefault(b => b.Verification == Backup.V1.VerificationStatus.Passed);
                if (verified is null)
                {
                    failed.Add($"{database}: no backup whose restore drill passed (run VerifyBackup first)");
                    continue;
                }
                using var call = backup.RestoreBackup(new Backup.V1.RestoreBackupRequest
                {
                    Target = database, BackupId = verified.BackupId, PreRestoreBackup = true,
                }, deadline: DateTime.UtcNow.AddHours(1), cancellationToken: ct);
                Backup.V1.RestoreResult? result = null;
                await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
                {
                    result = message.Result ?? result;
                }
                if (result is null)
                {
                    failed.Add($"{database}: the restore stream ended without a result");
                }
                else
                {
                    done.Add($"{database}: restored from {verified.BackupId} (pre-restore backup {result.PreRestoreBackupId}, previous database kept as {result.ReplacedDatabase})");
                }
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                failed.Add($"{database}: {e.StatusCode} {e.Status.Detail}");
            }
        }
        return Outcome(done, failed);
    }

    private static DrStepOutcome Outcome(List<string> done, List<string> failed) => failed.Count == 0
        ? DrStepOutcome.Ok(string.Join("; ", done))
        : DrStepOutcome.Failed(string.Join("; ", failed) + (done.Count > 0 ? "; succeeded: " + string.Join("; ", done) : ""));

    private static DrStepOutcome NotConfigured(string what, IReadOnlyList<string> databases) =>
        DrStepOutcome.Failed($"cannot {what} {string.Join(", ", databases)}: backup service not configured (services:backup:grpc:0)");
}

/// <summary><c>backup</c>: a full backup of the step's databases (every service database the backup service targets when there are none).</summary>
public sealed class BackupStep(IBackupGateway backups) : IDrStepExecutor
{
    public DrStepType Type => DrStepType.Backup;

    public Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct) =>
        backups.BackupAsync(context.Step.Targets.Count == 0 ? BackedUpByDefault : [.. context.Step.Targets], ct);

    /// <summary>The databases a backup step without targets backs up: every service database the backup service targets.</summary>
    public static readonly string[] BackedUpByDefault = ["queuedb", "registrydb", "checkpointdb", "recoverydb"];
}

/// <summary><c>restore</c>: restores the step's databases (queue, registry and checkpoint when there are no targets) from their newest verified backups.</summary>
public sealed class RestoreStep(IBackupGateway backups) : IDrStepExecutor
{
    public DrStepType Type => DrStepType.Restore;

    public Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct) =>
        backups.RestoreLatestAsync(context.Step.Targets.Count == 0 ? RestoredByDefault : [.. context.Step.Targets], ct);

    /// <summary>The databases a restore step without targets restores: the task-facing services' (not recovery's own, nor the catalog).</summary>
    public static readonly string[] RestoredByDefault = ["queuedb", "registrydb", "checkpointdb"];
}

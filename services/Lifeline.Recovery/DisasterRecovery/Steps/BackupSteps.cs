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
/// The backup gateway of this build. The backup service's contract is not part of it yet, so a backup or
/// restore step can only succeed once that client is added: without <c>services:backup:grpc:0</c> the step
/// fails with "backup service not configured"; with it, the step fails saying this build has no backup client.
/// </summary>
public sealed class BackupServiceGateway(SuiteClients clients) : IBackupGateway
{
    public Task<DrStepOutcome> BackupAsync(IReadOnlyList<string> databases, CancellationToken ct) => Task.FromResult(Unavailable("backup", databases));

    public Task<DrStepOutcome> RestoreLatestAsync(IReadOnlyList<string> databases, CancellationToken ct) => Task.FromResult(Unavailable("restore", databases));

    private DrStepOutcome Unavailable(string what, IReadOnlyList<string> databases) => DrStepOutcome.Failed(clients.Has("backup")
        ? $"cannot {what} {string.Join(", ", databases)}: this recovery build has no client of the backup service's contract"
        : $"cannot {what} {string.Join(", ", databases)}: backup service not configured (services:backup:grpc:0)");
}

/// <summary><c>backup</c>: a full backup of the step's databases (every service database when there are no targets).</summary>
public sealed class BackupStep(IBackupGateway backups) : IDrStepExecutor
{
    public DrStepType Type => DrStepType.Backup;

    public Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct) =>
        backups.BackupAsync(context.Step.Targets.Count == 0 ? DrValidation.Databases : [.. context.Step.Targets], ct);
}

/// <summary><c>restore</c>: restores the step's databases (every service database when there are no targets) from their latest verified backups.</summary>
public sealed class RestoreStep(IBackupGateway backups) : IDrStepExecutor
{
    public DrStepType Type => DrStepType.Restore;

    public Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct) =>
        backups.RestoreLatestAsync(context.Step.Targets.Count == 0 ? DrValidation.Databases : [.. context.Step.Targets], ct);
}

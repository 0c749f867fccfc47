using Lifeline.Checkpoint.Artifacts;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Options;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;

namespace Lifeline.Checkpoint.Maintenance;

/// <summary>
/// Keeps storage bounded: trims each workflow to its newest <c>RetentionKeepLast</c> checkpoints
/// (phase endpoints kept; remaining checkpoints still reconstruct) and removes artifacts no
/// checkpoint refers to, and chunks of interrupted uploads, once past the grace period. Safe with
/// several instances: trimming locks the workflow's head row, collection is one statement.
/// </summary>
public sealed partial class CheckpointMaintenance(
    CheckpointPruner pruner, ArtifactStore artifacts, IOptions<CheckpointOptions> options, ILogger<CheckpointMaintenance> logger)
    : BackgroundLoop(logger)
{
    protected override TimeSpan FirstDelay => options.Value.MaintenanceInterval;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await RunOnceAsync(stoppingToken);
        return options.Value.MaintenanceInterval;
    }

    public async Task RunOnceAsync(CancellationToken ct)
    {
        var keepLast = options.Value.RetentionKeepLast;
        if (keepLast > 0)
        {
            foreach (var (tenant, workflowId) in await pruner.WorkflowsOverAsync(keepLast, ct))
            {
                var result = await pruner.CleanupAsync(tenant, workflowId, new CleanupRules(keepLast, KeepPhaseEndpoints: true, null, DryRun: false), ct);
                LogTrimmed(logger, workflowId, result.Removed.Count);
            }
        }
        var (removedArtifacts, removedChunks) = await artifacts.CollectAsync(options.Value.ArtifactGracePeriod, ct);
        if (removedArtifacts + removedChunks > 0)
        {
            LogCollected(logger, removedArtifacts, removedChunks);
        }
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Trimmed workflow {WorkflowId}: {Removed} old checkpoints removed")]
    private static partial void LogTrimmed(ILogger logger, string workflowId, int removed);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "Collected {Artifacts} unreferenced artifact chunk sets and {Chunks} orphaned chunks")]
    private static partial void LogCollected(ILogger logger, int artifacts, int chunks);
}

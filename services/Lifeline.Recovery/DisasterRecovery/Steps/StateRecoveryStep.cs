using Lifeline.Recovery.SystemState;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>
/// <c>state_recovery</c>: restores the newest system-state snapshot and reconciles it with the live queue and
/// registry (<see cref="SystemStateKeeper.RestoreAndReconcileAsync"/>). Fails when the snapshot is refused
/// (status ERROR) or the write is fenced off by a newer leader.
/// </summary>
public sealed class StateRecoveryStep(SystemStateKeeper keeper) : IDrStepExecutor
{
    public DrStepType Type => DrStepType.StateRecovery;

    public async Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct)
    {
        try
        {
            var state = await keeper.RestoreAndReconcileAsync(ct);
            var summary = $"system state {state.Id} written ({state.Reason}, {state.Status})" + (state.Message.Length > 0 ? $": {state.Message}" : "");
            return state.Status == SystemStatus.Error ? DrStepOutcome.Failed(summary) : DrStepOutcome.Ok(summary);
        }
        catch (SnapshotFencedException e)
        {
            return DrStepOutcome.Failed(e.Message);
        }
    }
}

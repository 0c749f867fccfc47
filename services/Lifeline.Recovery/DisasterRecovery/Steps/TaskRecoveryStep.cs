using Lifeline.Recovery.InFlight;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>
/// <c>task_recovery</c>: one in-flight recovery scan now (the same scan the leader runs every interval). Only
/// the leader acts, so on a standby the step fails naming the leader.
/// </summary>
public sealed class TaskRecoveryStep(RecoveryScanner scanner) : IDrStepExecutor
{
    public DrStepType Type => DrStepType.TaskRecovery;

    public async Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct)
    {
        try
        {
            var scan = await scanner.ScanOnceAsync(ct);
            return DrStepOutcome.Ok($"recovery scan: {scan.Examined} in-flight task(s) examined, {scan.Actions.Count} recovered, " +
                                    $"{scan.SkippedAlive} left with live workers, {scan.Recoverable} still recoverable, in {scan.Duration.TotalMilliseconds:0} ms");
        }
        catch (NotLeaderException e)
        {
            return DrStepOutcome.Failed(e.Message);
        }
    }
}

using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>The step being run, within its run.</summary>
public sealed record DrStepContext(Guid RunId, Guid PlanId, string PlanName, int Index, DrStep Step, IReadOnlyList<DrStepResult> Results);

/// <summary>How a step ended: a failed step's message says what failed.</summary>
public sealed record DrStepOutcome(bool Succeeded, string Message)
{
    public static DrStepOutcome Ok(string message) => new(true, message);
    public static DrStepOutcome Failed(string message) => new(false, message);
}

/// <summary>
/// Runs one type of disaster-recovery step. The token fires on the step's timeout, on cancellation of the run
/// and on shutdown; an executor stops promptly when it does. Exceptions fail the step with their message.
/// </summary>
public interface IDrStepExecutor
{
    DrStepType Type { get; }

    Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct);
}

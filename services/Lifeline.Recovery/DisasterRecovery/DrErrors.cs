using Grpc.Core;
using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>A plan with this name exists: ALREADY_EXISTS <c>DR_PLAN_EXISTS</c> (metadata <c>plan_id</c> of the existing plan).</summary>
public sealed class DrPlanExistsException : LifelineException
{
    public DrPlanExistsException(string name, Guid existing)
        : base($"A disaster-recovery plan named '{name}' exists already (plan {existing}); plan names are unique.")
    {
        Metadata["plan_id"] = existing.ToString();
        Metadata["name"] = name;
    }

    public override StatusCode Code => StatusCode.AlreadyExists;
    public override string Reason => "DR_PLAN_EXISTS";
}

internal static class DrErrors
{
    /// <summary>Another run is in progress (anywhere): ABORTED <c>RECOVERY_IN_PROGRESS</c>, metadata <c>run_id</c>.</summary>
    public static ConcurrencyConflictException InProgress(Guid runId, Guid planId, string instance)
    {
        var e = new ConcurrencyConflictException(
            $"recovery already in progress: run {runId} of plan {planId} on instance {instance}; follow it with GetDisasterRecoveryRun",
            TimeSpan.FromSeconds(5), "RECOVERY_IN_PROGRESS");
        e.Metadata["run_id"] = runId.ToString();
        e.Metadata["plan_id"] = planId.ToString();
        return e;
    }

    /// <summary>The run is not running (any more): FAILED_PRECONDITION <c>RUN_NOT_RUNNING</c>, metadata <c>current_state</c>.</summary>
    public static PreconditionFailedException NotRunning(Guid runId, string state)
    {
        var e = new PreconditionFailedException("RUN_NOT_RUNNING", $"Disaster-recovery run {runId} is not running (it is {state}); only a running run can be cancelled.");
        e.Metadata["run_id"] = runId.ToString();
        e.Metadata["current_state"] = state;
        return e;
    }
}

using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.Recovery.Plans;

/// <summary>The plan requires approval and has none: FAILED_PRECONDITION <c>APPROVAL_REQUIRED</c>; nothing ran.</summary>
public sealed class ApprovalRequiredException : PreconditionFailedException
{
    public ApprovalRequiredException(Guid planId)
        : base("APPROVAL_REQUIRED", $"Recovery plan {planId} requires approval before it runs; approve it with ApproveRecoveryPlan, then execute it.")
    {
        Metadata["plan_id"] = planId.ToString();
    }
}

/// <summary>The operation does not fit the plan's (or its action's) state: FAILED_PRECONDITION <c>INVALID_PLAN_STATE</c>.</summary>
public sealed class InvalidPlanStateException : PreconditionFailedException
{
    public InvalidPlanStateException(Guid planId, string currentState, string message)
        : base("INVALID_PLAN_STATE", message)
    {
        Metadata["plan_id"] = planId.ToString();
        Metadata["current_state"] = currentState;
    }
}

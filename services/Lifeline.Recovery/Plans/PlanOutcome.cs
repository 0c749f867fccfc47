using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Plans;

/// <summary>
/// How a finished plan ends, and what an operator should do next.
/// <list type="bullet">
/// <item>RECOVERED: every action that ran succeeded (fallbacks that were not needed are skipped, not failed).</item>
/// <item>ESCALATED: some action failed, and an escalate action after the last failure was resolved as
/// succeeded — the operators, not the automatic actions, settled the error: the escalation was the deciding step.</item>
/// <item>PARTIAL: some action failed, at least one succeeded, and no resolved escalation came after the last failure.</item>
/// <item>FAILED: no action succeeded.</item>
/// </list>
/// </summary>
public static class PlanOutcome
{
    public static PlanStatus Final(IReadOnlyList<PlanAction> actions)
    {
        var lastFailed = -1;
        for (var i = 0; i < actions.Count; i++)
        {
            if (actions[i].Status == PlanActionStatus.Failed)
            {
                lastFailed = i;
            }
        }
        var anySucceeded = actions.Any(a => a.Status == PlanActionStatus.Succeeded);
        if (lastFailed < 0)
        {
            return anySucceeded ? PlanStatus.Recovered : PlanStatus.Failed;
        }
        if (actions.Skip(lastFailed + 1).Any(a => a.Type == PlanActionType.Escalate && a.Status == PlanActionStatus.Succeeded))
        {
            return PlanStatus.Escalated;
        }
        return anySucceeded ? PlanStatus.Partial : PlanStatus.Failed;
    }

    /// <summary>Concrete guidance for the plan as it stands.</summary>
    public static List<string> NextSteps(Guid planId, PlanStatus status, IReadOnlyList<PlanAction> actions, ErrorContext error)
    {
        var id = planId.ToString();
        var steps = new List<string>();
        switch (status)
        {
            case PlanStatus.AwaitingApproval:
                steps.Add($"Review the {actions.Count} action(s); they change live work (" +
                          string.Join(", ", actions.Where(a => a.RequiresApproval).Select(a => Name(a.Type))) + ").");
                steps.Add($"Approve: ApproveRecoveryPlan {{\"plan_id\":\"{id}\",\"approved_by\":\"<you>\"}}; then run it: ExecuteRecoveryPlan {{\"plan_id\":\"{id}\"}}.");
                break;
            case PlanStatus.Ready:
                steps.Add($"Run it: ExecuteRecoveryPlan {{\"plan_id\":\"{id}\"}}.");
                break;
            case PlanStatus.Running:
                steps.Add($"The plan is executing; follow it with GetRecoveryPlan {{\"plan_id\":\"{id}\"}}.");
                break;
            case PlanStatus.Waiting:
                var index = IndexOf(actions, PlanActionStatus.Waiting);
                var waiting = actions[index];
                steps.Add(waiting.Type == PlanActionType.Escalate
                    ? $"Action {index} escalated error {error.Code} to the configured webhooks (event recovery.plan.escalated): investigate it. {waiting.Description}"
                    : $"Action {index} waits for you: {waiting.Description}");
                steps.Add($"When done: ResolveManualAction {{\"plan_id\":\"{id}\",\"action_index\":{index},\"resolved_by\":\"<you>\",\"resolution\":\"<what you did>\",\"succeeded\":true}} " +
                          "continues the plan; \"succeeded\":false ends it.");
                break;
            default:
                for (var i = 0; i < actions.Count; i++)
                {
                    var a = actions[i];
                    if (a.Status == PlanActionStatus.Failed)
                    {
                        steps.Add($"Action {i} ({Name(a.Type)}) failed: {a.Result}. Fix the cause, then create a new plan for error {error.Code} (CreateRecoveryPlan).");
                    }
                    else if (a.Status == PlanActionStatus.Succeeded)
                    {
                        steps.AddRange(FollowUp(a, error));
                    }
                }
                if (status == PlanStatus.Escalated)
                {
                    var escalation = actions.Last(a => a.Type == PlanActionType.Escalate && a.Status == PlanActionStatus.Succeeded);
                    steps.Add($"Escalation resolved by {escalation.ResolvedBy}: {escalation.Resolution}. Confirm the follow-up it describes is done.");
                }
                break;
        }
        return steps;
    }

    private static IEnumerable<string> FollowUp(PlanAction a, ErrorContext error)
    {
        switch (a.Type)
        {
            case PlanActionType.Retry:
                yield return $"Retry: {a.Result}. Follow the task with QueueService.GetTask until it completes.";
                break;
            case PlanActionType.Rollback:
                yield return $"Rollback: {a.Result}. Work on workflow '{error.WorkflowId}' continues from that state.";
                break;
            case PlanActionType.Abort:
                yield return $"Abort: {a.Result}. Re-submit the work if it is still needed once the cause of {error.Code} is fixed.";
                break;
            case PlanActionType.Manual:
                yield return $"Manual step resolved by {a.ResolvedBy}: {a.Resolution}.";
                break;
        }
    }

    private static int IndexOf(IReadOnlyList<PlanAction> actions, PlanActionStatus status)
    {
        for (var i = 0; i < actions.Count; i++)
        {
            if (actions[i].Status == status)
            {
                return i;
            }
        }
        throw new InvalidOperationException($"no action is {status}");
    }

    internal static string Name(PlanActionType type) => type.ToString().ToLowerInvariant();
}

using Google.Protobuf.WellKnownTypes;
using Lifeline.Common.V1;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Plans;

/// <summary>A plan as built: its actions (all pending), where they came from, and whether it needs approval.</summary>
public sealed record BuiltPlan(IReadOnlyList<PlanAction> Actions, string Source, bool RequiresApproval, TimeSpan EstimatedDuration);

/// <summary>
/// Chooses the actions of a recovery plan from the error's category and severity (the strategy matrix),
/// or from a custom plan configured for its code (<c>Recovery:CustomPlans:&lt;code&gt;</c>, which replaces
/// the matrix; source <c>custom:&lt;code&gt;</c>). Pure: no I/O, same input → same plan.
/// <code>
/// category     actions (confidence, estimate)                                    approval
/// TRANSIENT    retry (0.9, 30 s) → escalate* (0.5, 1 h)                          severity ≥ HIGH
/// RESOURCE     retry (0.6, 5 min) → escalate* (0.5, 1 h)                         severity ≥ HIGH
/// EXTERNAL     retry (0.7, 1 min) → manual* (0.6, 30 min)                        severity ≥ HIGH
/// VALIDATION   LOW/MEDIUM: skip (0.5, 0 s); HIGH/CRITICAL: manual (0.8, 30 min)  severity ≥ HIGH
/// LOGIC        rollback (0.7, 1 min) → retry (0.6, 30 s)                         always
/// SECURITY     abort (0.9, 5 s) → escalate (0.8, 1 h)                            always
/// CRITICAL     abort (0.8, 5 s) → escalate (0.9, 1 h)                            always
/// </code>
/// Severity unset counts as MEDIUM. "Approval" puts <c>requires_approval</c> on the actions that change
/// something (retry, rollback, abort); the plan requires approval when any action does.
/// * A manual or escalate action that directly follows retry, rollback or skip actions is their fallback: it
/// runs only if one of them failed (see <see cref="FallbackOf"/>). After an abort, or first in a plan, it always runs.
/// </summary>
public static class PlanBuilder
{
    public const string MatrixSource = "matrix";
    public const string CustomSourcePrefix = "custom:";

    /// <summary>Action type names accepted in <c>Recovery:CustomPlans</c>.</summary>
    public static readonly IReadOnlyDictionary<string, PlanActionType> ActionNames = new Dictionary<string, PlanActionType>(StringComparer.OrdinalIgnoreCase)
    {
        ["retry"] = PlanActionType.Retry,
        ["rollback"] = PlanActionType.Rollback,
        ["skip"] = PlanActionType.Skip,
        ["manual"] = PlanActionType.Manual,
        ["escalate"] = PlanActionType.Escalate,
        ["abort"] = PlanActionType.Abort,
    };

    private sealed record Template(PlanActionType Type, double Confidence, TimeSpan Estimate, string Description);

    public static BuiltPlan Build(ErrorContext error, IReadOnlyDictionary<string, string[]> customPlans)
    {
        var severity = error.Severity == Severity.Unspecified ? Severity.Medium : error.Severity;
        var severe = severity is Severity.High or Severity.Critical;
        if (customPlans.TryGetValue(error.Code, out var custom) && custom.Length > 0)
        {
            var customActions = custom.Select(name => Default(ActionNames[name], error)).ToList();
            return Finish(customActions, CustomSourcePrefix + error.Code, approval: severe);
        }

        (Template[] templates, bool alwaysApproval) = error.Category switch
        {
            ErrorCategory.Transient => (new Template[] {
                new(PlanActionType.Retry, 0.9, TimeSpan.FromSeconds(30), "Re-run the task through the queue: transient errors usually pass on a second attempt."),
                Escalation(0.5, "If the retry fails, notify the on-call operators (webhook) and wait for them to resolve it."),
            }, false),
            ErrorCategory.Resource => (new Template[] {
                new(PlanActionType.Retry, 0.6, TimeSpan.FromMinutes(5), "Re-run the task through the queue once resources free up (expect a longer wait)."),
                Escalation(0.5, "If the retry fails, notify the operators to add capacity or free resources, and wait for them."),
            }, false),
            ErrorCategory.External => (new Template[] {
                new(PlanActionType.Retry, 0.7, TimeSpan.FromMinutes(1), "Re-run the task through the queue: the external dependency may be back."),
                new(PlanActionType.Manual, 0.6, TimeSpan.FromMinutes(30), "If the retry fails, check the external dependency (status page, credentials, quotas), then resolve this step."),
            }, false),
            ErrorCategory.Validation => (severe
                ? new Template[] { new(PlanActionType.Manual, 0.8, TimeSpan.FromMinutes(30), "Correct the task's input (payload or upstream data), re-submit it, then resolve this step.") }
                : new Template[] { new(PlanActionType.Skip, 0.5, TimeSpan.Zero, "Leave the invalid task as it is and go on: retrying the same input fails the same way.") }, false),
            ErrorCategory.Logic => (new Template[] {
                new(PlanActionType.Rollback, 0.7, TimeSpan.FromMinutes(1), "Roll the workflow back to its latest valid checkpoint, undoing the faulty step's state."),
                new(PlanActionType.Retry, 0.6, TimeSpan.FromSeconds(30), "Re-run the task from the rolled-back state."),
            }, true),
            ErrorCategory.Security => (new Template[] {
                new(PlanActionType.Abort, 0.9, TimeSpan.FromSeconds(5), "Cancel the task at once so it does no further harm."),
                Escalation(0.8, "Notify the security on-call (webhook) and wait for them to investigate and resolve this step."),
            }, true),
            ErrorCategory.Critical => (new Template[] {
                new(PlanActionType.Abort, 0.8, TimeSpan.FromSeconds(5), "Cancel the task at once to contain the failure."),
                Escalation(0.9, "Notify the operators (webhook) and wait for them to resolve this step."),
            }, true),
            _ => throw new ArgumentOutOfRangeException(nameof(error), error.Category, "the error category is required"),
        };
        var actions = templates.Select(t => new PlanAction
        {
            Type = t.Type,
            Confidence = t.Confidence,
            EstimatedDuration = Duration.FromTimeSpan(t.Estimate),
            Description = t.Description,
        }).ToList();
        return Finish(actions, MatrixSource, alwaysApproval || severe);
    }

    private static Template Escalation(double confidence, string description) =>
        new(PlanActionType.Escalate, confidence, TimeSpan.FromHours(1), description);

    /// <summary>A custom plan's action: the type's usual confidence, estimate and description.</summary>
    private static PlanAction Default(PlanActionType type, ErrorContext error)
    {
        var (confidence, estimate, description) = type switch
        {
            PlanActionType.Retry => (0.7, TimeSpan.FromSeconds(30), "Re-run the task through the queue."),
            PlanActionType.Rollback => (0.7, TimeSpan.FromMinutes(1), "Roll the workflow back to its latest valid checkpoint."),
            PlanActionType.Skip => (0.5, TimeSpan.Zero, "Leave the task as it is and go on."),
            PlanActionType.Manual => (0.6, TimeSpan.FromMinutes(30), $"Handle error {error.Code} by hand, then resolve this step."),
            PlanActionType.Escalate => (0.6, TimeSpan.FromHours(1), "Notify the operators (webhook) and wait for them to resolve this step."),
            PlanActionType.Abort => (0.8, TimeSpan.FromSeconds(5), "Cancel the task."),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
        };
        return new PlanAction { Type = type, Confidence = confidence, EstimatedDuration = Duration.FromTimeSpan(estimate), Description = description };
    }

    private static BuiltPlan Finish(List<PlanAction> actions, string source, bool approval)
    {
        foreach (var action in actions)
        {
            action.Status = PlanActionStatus.Pending;
            action.RequiresApproval = approval && action.Type is PlanActionType.Retry or PlanActionType.Rollback or PlanActionType.Abort;
        }
        var estimate = actions.Aggregate(TimeSpan.Zero, (sum, a) => sum + a.EstimatedDuration.ToTimeSpan());
        return new BuiltPlan(actions, source, actions.Any(a => a.RequiresApproval), estimate);
    }

    /// <summary>Whether a plan's actions need the task (retry, abort) or the workflow (rollback).</summary>
    public static (bool NeedsTask, bool NeedsWorkflow) Needs(IEnumerable<PlanAction> actions)
    {
        var list = actions.ToList();
        return (list.Any(a => a.Type is PlanActionType.Retry or PlanActionType.Abort), list.Any(a => a.Type == PlanActionType.Rollback));
    }

    /// <summary>
    /// A manual or escalate action is a fallback when it directly follows retry, rollback or skip actions:
    /// it runs only if one of those (the unbroken run of them right before it) failed.
    /// Returns that run's index range, or null when the action always runs.
    /// </summary>
    public static Range? FallbackOf(IReadOnlyList<PlanAction> actions, int index)
    {
        if (actions[index].Type is not (PlanActionType.Manual or PlanActionType.Escalate))
        {
            return null;
        }
        var first = index;
        while (first > 0 && actions[first - 1].Type is PlanActionType.Retry or PlanActionType.Rollback or PlanActionType.Skip)
        {
            first--;
        }
        return first < index ? new Range(first, index) : null;
    }
}

using Lifeline.Common.V1;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Paging;
using Lifeline.ServiceDefaults.Tenancy;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Recovery.Plans;

/// <summary>What CreateRecoveryPlan stores: the normalised error context and the plan built for it.</summary>
public sealed record NewPlan(ErrorContext Error, Guid? TaskId, BuiltPlan Plan);

/// <summary>Validates RecoveryPlanService requests, listing every violation with its field path.</summary>
public static partial class RecoveryPlanValidation
{
    public const int MaxNameLength = 200;
    public const int MaxTextLength = 4096;

    /// <param name="callerTenant">The tenant of the caller's identity: the plan's tenant, whatever the body says.</param>
    public static NewPlan Create(CreateRecoveryPlanRequest request, string callerTenant, IReadOnlyDictionary<string, string[]> customPlans)
    {
        var v = new Violations();
        var error = request.Error;
        if (error is null)
        {
            v.Add("error", "is required");
            v.ThrowIfAny();
        }
        var e = error!.Clone();
        e.Code = e.Code.Trim();
        v.Text("error.code", e.Code, 128, required: true);
        if (e.Category == ErrorCategory.Unspecified)
        {
            v.Add("error.category", "is required (TRANSIENT, VALIDATION, RESOURCE, LOGIC, EXTERNAL, SECURITY or CRITICAL)");
        }
        else
        {
            v.DefinedEnum("error.category", e.Category);
        }
        v.DefinedEnum("error.severity", e.Severity);
        v.Text("error.message", e.Message, MaxTextLength);
        var taskId = v.Uuid("error.task_id", e.TaskId, required: false);
        v.Text("error.workflow_id", e.WorkflowId, 200);
        v.AddIf(e.TenantId.Length > 0 && !Tenant.IsValid(e.TenantId), "error.tenant_id",
            "must be 1 to 64 characters of lowercase letters, digits, '-' and '_'");
        v.ThrowIfAny();
        if (e.TenantId.Length > 0 && e.TenantId != callerTenant)
        {
            // A body never chooses the tenant; naming another one finds nothing, as its task ids would.
            throw new ServiceDefaults.Errors.NotFoundException("task", e.TaskId.Length > 0 ? e.TaskId : e.TenantId);
        }
        e.TenantId = callerTenant;

        var plan = PlanBuilder.Build(e, customPlans);
        var (needsTask, needsWorkflow) = PlanBuilder.Needs(plan.Actions);
        var acting = string.Join(" and ", plan.Actions.Select(a => a.Type).Distinct().Where(t => t is PlanActionType.Retry or PlanActionType.Abort)
            .Select(t => t.ToString().ToLowerInvariant()));
        v.AddIf(needsTask && e.TaskId.Length == 0, "error.task_id", $"is required (a UUID): the plan's {acting} action acts on the task");
        v.AddIf(needsWorkflow && e.WorkflowId.Length == 0, "error.workflow_id", "is required: the plan's rollback action acts on the workflow");
        v.ThrowIfAny();
        if (taskId != Guid.Empty)
        {
            e.TaskId = taskId.ToString();
        }
        return new NewPlan(e, taskId == Guid.Empty ? null : taskId, plan);
    }

    public static Guid PlanId(string value)
    {
        var v = new Violations();
        var id = v.Uuid("plan_id", value);
        v.ThrowIfAny();
        return id;
    }

    public static (PlanStatus Status, int PageSize, KeysetPageToken? After) List(ListRecoveryPlansRequest request)
    {
        var v = new Violations();
        v.DefinedEnum("status", request.Status);
        var size = v.PageSize("page_size", request.PageSize, 100, 1000);
        var after = PageToken(v, KeysetPageToken.RecoveryPlans, request.PageToken);
        v.ThrowIfAny();
        return (request.Status, size, after);
    }

    public static (Guid PlanId, string ApprovedBy) Approve(ApproveRecoveryPlanRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("plan_id", request.PlanId);
        Who(v, "approved_by", request.ApprovedBy);
        v.ThrowIfAny();
        return (id, request.ApprovedBy.Trim());
    }

    public static Guid Resolve(ResolveManualActionRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("plan_id", request.PlanId);
        v.AddIf(request.ActionIndex < 0, "action_index", $"must be 0 or more; got {request.ActionIndex}");
        Who(v, "resolved_by", request.ResolvedBy);
        v.Text("resolution", request.Resolution, MaxTextLength);
        v.ThrowIfAny();
        return id;
    }

    /// <summary>A request's page token of <paramref name="listing"/>; empty is the first page, anything not issued a violation.</summary>
    internal static KeysetPageToken? PageToken(Violations v, string listing, string token)
    {
        KeysetPageToken parsed = default;
        return PageTokens.TryRead(v, token, t => KeysetPageToken.TryDecode(listing, t, out parsed)) ? parsed : null;
    }

    private static void Who(Violations v, string field, string value)
    {
        v.AddIf(value.Trim().Length == 0, field, "is required");
        v.Text(field, value, MaxNameLength);
    }
}

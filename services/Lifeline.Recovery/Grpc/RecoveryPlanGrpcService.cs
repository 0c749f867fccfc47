using Grpc.Core;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.Plans;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Tenancy;
using Microsoft.Extensions.Options;

namespace Lifeline.Recovery.Grpc;

/// <summary>
/// The RecoveryPlanService contract: validates, delegates to the plan store and executor. Plans belong to a tenant:
/// every call acts on the caller's tenant's plans only (<see cref="Tenant.From"/>, whatever its role), and another
/// tenant's plan is NOT_FOUND.
/// </summary>
public sealed class RecoveryPlanGrpcService(RecoveryPlanStore store, RecoveryPlanExecutor executor, IOptionsMonitor<RecoveryOptions> options)
    : RecoveryPlanService.RecoveryPlanServiceBase
{
    public override async Task<CreateRecoveryPlanResponse> CreateRecoveryPlan(CreateRecoveryPlanRequest request, ServerCallContext context)
    {
        var plan = RecoveryPlanValidation.Create(request, Tenant.From(context), options.CurrentValue.CustomPlans);
        return new CreateRecoveryPlanResponse { Plan = await store.CreateAsync(plan, context.CancellationToken) };
    }

    public override async Task<GetRecoveryPlanResponse> GetRecoveryPlan(GetRecoveryPlanRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RecoveryPlanValidation.PlanId(request.PlanId);
        return new GetRecoveryPlanResponse { Plan = await store.GetAsync(tenant, id, context.CancellationToken) };
    }

    public override async Task<ListRecoveryPlansResponse> ListRecoveryPlans(ListRecoveryPlansRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var (status, pageSize, after) = RecoveryPlanValidation.List(request);
        var (plans, next) = await store.ListAsync(tenant, status, pageSize, after, context.CancellationToken);
        var response = new ListRecoveryPlansResponse { NextPageToken = next };
        response.Plans.AddRange(plans);
        return response;
    }

    public override async Task<ExecuteRecoveryPlanResponse> ExecuteRecoveryPlan(ExecuteRecoveryPlanRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RecoveryPlanValidation.PlanId(request.PlanId);
        return new ExecuteRecoveryPlanResponse { Plan = await executor.ExecuteAsync(tenant, id, context.CancellationToken) };
    }

    public override async Task<ApproveRecoveryPlanResponse> ApproveRecoveryPlan(ApproveRecoveryPlanRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var (id, approvedBy) = RecoveryPlanValidation.Approve(request);
        return new ApproveRecoveryPlanResponse { Plan = await store.ApproveAsync(tenant, id, approvedBy, context.CancellationToken) };
    }

    public override async Task<ResolveManualActionResponse> ResolveManualAction(ResolveManualActionRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = RecoveryPlanValidation.Resolve(request);
        return new ResolveManualActionResponse { Plan = await executor.ResolveAsync(tenant, id, request, context.CancellationToken) };
    }
}

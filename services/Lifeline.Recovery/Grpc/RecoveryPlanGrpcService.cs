using Grpc.Core;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.Plans;
using Lifeline.Recovery.V1;
using Microsoft.Extensions.Options;

namespace Lifeline.Recovery.Grpc;

/// <summary>The RecoveryPlanService contract: validates, delegates to the plan store and executor.</summary>
public sealed class RecoveryPlanGrpcService(RecoveryPlanStore store, RecoveryPlanExecutor executor, IOptionsMonitor<RecoveryOptions> options)
    : RecoveryPlanService.RecoveryPlanServiceBase
{
    public override async Task<CreateRecoveryPlanResponse> CreateRecoveryPlan(CreateRecoveryPlanRequest request, ServerCallContext context)
    {
        var plan = RecoveryPlanValidation.Create(request, ServiceDefaults.Tenancy.Tenant.From(context), options.CurrentValue.CustomPlans);
        return new CreateRecoveryPlanResponse { Plan = await store.CreateAsync(plan, context.CancellationToken) };
    }

    public override async Task<GetRecoveryPlanResponse> GetRecoveryPlan(GetRecoveryPlanRequest request, ServerCallContext context) =>
        new() { Plan = await store.GetAsync(RecoveryPlanValidation.PlanId(request.PlanId), context.CancellationToken) };

    public override async Task<ListRecoveryPlansResponse> ListRecoveryPlans(ListRecoveryPlansRequest request, ServerCallContext context)
    {
        var (status, pageSize, after) = RecoveryPlanValidation.List(request);
        var (plans, next) = await store.ListAsync(status, pageSize, after, context.CancellationToken);
        var response = new ListRecoveryPlansResponse { NextPageToken = next };
        response.Plans.AddRange(plans);
        return response;
    }

    public override async Task<ExecuteRecoveryPlanResponse> ExecuteRecoveryPlan(ExecuteRecoveryPlanRequest request, ServerCallContext context) =>
        new() { Plan = await executor.ExecuteAsync(RecoveryPlanValidation.PlanId(request.PlanId), context.CancellationToken) };

    public override async Task<ApproveRecoveryPlanResponse> ApproveRecoveryPlan(ApproveRecoveryPlanRequest request, ServerCallContext context)
    {
        var (id, approvedBy) = RecoveryPlanValidation.Approve(request);
        return new ApproveRecoveryPlanResponse { Plan = await store.ApproveAsync(id, approvedBy, context.CancellationToken) };
    }

    public override async Task<ResolveManualActionResponse> ResolveManualAction(ResolveManualActionRequest request, ServerCallContext context)
    {
        var id = RecoveryPlanValidation.Resolve(request);
        return new ResolveManualActionResponse { Plan = await executor.ResolveAsync(id, request, context.CancellationToken) };
    }
}

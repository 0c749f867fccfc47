using Grpc.Core;
using Lifeline.Recovery.DisasterRecovery;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Grpc;

/// <summary>The DisasterRecoveryService contract: validates, delegates to the plan store, the run coordinator and the outbox.</summary>
public sealed class DisasterRecoveryGrpcService(DrPlanStore plans, DrRunCoordinator runs, NotificationOutbox outbox)
    : DisasterRecoveryService.DisasterRecoveryServiceBase
{
    public override async Task<CreateDisasterRecoveryPlanResponse> CreateDisasterRecoveryPlan(CreateDisasterRecoveryPlanRequest request, ServerCallContext context) =>
        new() { Plan = await plans.CreateAsync(DrValidation.Create(request), context.CancellationToken) };

    public override async Task<GetDisasterRecoveryPlanResponse> GetDisasterRecoveryPlan(GetDisasterRecoveryPlanRequest request, ServerCallContext context)
    {
        var (plan, recent) = await plans.GetAsync(DrValidation.Id("plan_id", request.PlanId), context.CancellationToken);
        var response = new GetDisasterRecoveryPlanResponse { Plan = plan };
        response.RecentRuns.AddRange(recent);
        return response;
    }

    public override async Task<ListDisasterRecoveryPlansResponse> ListDisasterRecoveryPlans(ListDisasterRecoveryPlansRequest request, ServerCallContext context)
    {
        var (size, after) = DrValidation.Page(request.PageSize, request.PageToken);
        var (page, next) = await plans.ListAsync(size, after, context.CancellationToken);
        var response = new ListDisasterRecoveryPlansResponse { NextPageToken = next };
        response.Plans.AddRange(page);
        return response;
    }

    public override async Task RunDisasterRecoveryPlan(RunDisasterRecoveryPlanRequest request, IServerStreamWriter<RunDisasterRecoveryPlanResponse> responseStream,
        ServerCallContext context)
    {
        var (planId, startedBy) = DrValidation.Run(request);
        var events = await runs.StartRunAsync(planId, startedBy, context.CancellationToken);
        // The run goes on without the caller: a disconnect only ends this stream.
        await foreach (var e in events.ReadAllAsync(context.CancellationToken))
        {
            await responseStream.WriteAsync(e, context.CancellationToken);
        }
    }

    public override async Task<GetDisasterRecoveryRunResponse> GetDisasterRecoveryRun(GetDisasterRecoveryRunRequest request, ServerCallContext context) =>
        new() { Run = await plans.GetRunAsync(DrValidation.Id("run_id", request.RunId), context.CancellationToken) };

    public override async Task<CancelDisasterRecoveryRunResponse> CancelDisasterRecoveryRun(CancelDisasterRecoveryRunRequest request, ServerCallContext context) =>
        new() { Run = await runs.CancelAsync(DrValidation.Id("run_id", request.RunId), context.CancellationToken) };

    public override async Task<ListNotificationsResponse> ListNotifications(ListNotificationsRequest request, ServerCallContext context)
    {
        var (status, size, after) = DrValidation.ListNotifications(request);
        var (page, next) = await outbox.ListAsync(status, size, after, context.CancellationToken);
        var response = new ListNotificationsResponse { NextPageToken = next };
        response.Notifications.AddRange(page.Select(n => n.ToProto()));
        return response;
    }
}

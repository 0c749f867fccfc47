using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.InFlight;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.Plans;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Validation;
using Microsoft.Extensions.Options;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.Grpc;

/// <summary>
/// The RecoveryService contract: actions, statistics, on-demand scans, leadership. Actions and statistics are the
/// caller's tenant's, or the whole suite's for a role that spans tenants (<see cref="SuiteView"/>); scans and
/// leadership are the suite's (platform admins only, by the permission table).
/// </summary>
public sealed class RecoveryGrpcService(
    ActionLog log, RecoveryScanner scanner, [FromKeyedServices(RecoveryLeadership.Role)] LeaderElection leader, SuiteClients clients, CoveredTenants tenants, IOptions<RecoveryOptions> options)
    : RecoveryService.RecoveryServiceBase
{
    public override async Task<ListRecoveryActionsResponse> ListRecoveryActions(ListRecoveryActionsRequest request, ServerCallContext context)
    {
        var tenant = SuiteView.TenantOf(context);
        var v = new Violations();
        var taskId = v.Uuid("task_id", request.TaskId, required: false);
        var workerId = v.Uuid("worker_id", request.WorkerId, required: false);
        if (request.Action != ActionType.Unspecified)
        {
            v.DefinedEnum("action", request.Action);
        }
        var pageSize = v.PageSize("page_size", request.PageSize, 100, 1000);
        var after = RecoveryPlanValidation.PageToken(v, KeysetPageToken.RecoveryActions, request.PageToken);
        (DateTime, Guid)? before = after is { } a ? (a.CreatedAt, a.Id) : null;
        var since = v.Timestamp("since", request.Since);
        v.ThrowIfAny();
        var page = await log.ListAsync(new ActionFilter(tenant, taskId == Guid.Empty ? null : taskId, workerId == Guid.Empty ? null : request.WorkerId,
            request.Action == ActionType.Unspecified ? null : request.Action, since, pageSize, before), context.CancellationToken);
        var response = new ListRecoveryActionsResponse();
        response.Actions.AddRange(page.Select(ToProto));
        if (page.Count == pageSize)
        {
            response.NextPageToken = new KeysetPageToken(page[^1].RecoveredAt, page[^1].Id).Encode(KeysetPageToken.RecoveryActions);
        }
        return response;
    }

    public override async Task<GetRecoveryStatsResponse> GetRecoveryStats(GetRecoveryStatsRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var scope = SuiteView.TenantOf(context);
        var today = await log.TodayAsync(scope, ct);
        long inFlight = 0;
        foreach (var tenant in scope is null ? await tenants.RefreshAsync(ct) : [scope])
        {
            var stats = await clients.Queue.GetQueueStatsAsync(new GetQueueStatsRequest(), ServiceCall.For(tenant, ct));
            inFlight += stats.Totals.GetValueOrDefault("TASK_STATUS_ASSIGNED") + stats.Totals.GetValueOrDefault("TASK_STATUS_RUNNING");
        }
        var last = scanner.LastScan;
        return new GetRecoveryStatsResponse
        {
            InFlight = inFlight,
            Recoverable = last is null ? 0 : scope is null ? last.Recoverable : last.RecoverableIn(scope),
            RecoveredToday = today.Recovered,
            FailedToday = today.Failed,
            TimeToRecoveryP50 = Duration.FromTimeSpan(today.P50),
            TimeToRecoveryP95 = Duration.FromTimeSpan(today.P95),
            TimeToRecoveryP99 = Duration.FromTimeSpan(today.P99),
            SuccessRate = today.Total == 0 ? 1 : (double)today.Recovered / today.Total,
            LastScanAt = Time(last?.At),
            LastScanDuration = last is null ? null : Duration.FromTimeSpan(last.Duration),
        };
    }

    public override async Task<RunRecoveryScanResponse> RunRecoveryScan(RunRecoveryScanRequest request, ServerCallContext context)
    {
        var result = await scanner.ScanOnceAsync(context.CancellationToken);
        var response = new RunRecoveryScanResponse
        {
            Examined = result.Examined,
            SkippedAlive = result.SkippedAlive,
            Duration = Duration.FromTimeSpan(result.Duration),
        };
        response.Actions.AddRange(result.Actions.Select(ToProto));
        return response;
    }

    public override async Task<GetLeadershipResponse> GetLeadership(GetLeadershipRequest request, ServerCallContext context)
    {
        var record = await leader.ReadLeaderAsync(context.CancellationToken);
        var (holder, token) = record is { Current: true } r ? (r.Holder, r.Term) : ("", 0L);
        var term = leader.Term;
        return new GetLeadershipResponse
        {
            LeaderInstance = holder,
            FencingToken = token,
            Since = Time(term?.Since),
            ThisInstance = leader.Holder,
            IsLeader = term is not null && holder == leader.Holder,
            LeaseDuration = Duration.FromTimeSpan(options.Value.LeaderLeaseDuration),
        };
    }

    internal static V1.RecoveryAction ToProto(ActionRecord a) => new()
    {
        Id = a.Id.ToString(),
        TenantId = a.TenantId,
        TaskId = a.TaskId.ToString(),
        TaskType = a.TaskType,
        WorkflowId = a.WorkflowId,
        PreviousStatus = a.PreviousStatus,
        NewStatus = a.NewStatus,
        Action = a.Action,
        Trigger = a.Trigger,
        Reason = a.Reason,
        WorkerId = a.WorkerId,
        CheckpointId = a.CheckpointId?.ToString() ?? "",
        FencingToken = a.FencingToken,
        DetectedAt = Time(a.DetectedAt),
        RecoveredAt = Time(a.RecoveredAt),
        TimeToRecovery = Duration.FromTimeSpan(a.RecoveredAt - a.DetectedAt),
        Succeeded = a.Succeeded,
        Error = a.Error ?? "",
        LeaderToken = a.LeaderToken,
    };
}

using System.Globalization;
using Grpc.Core;
using Lifeline.Recovery.SystemState;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.Plans;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Recovery.Grpc;

/// <summary>The SystemStateService contract: the newest snapshot and the history, read from the table on any instance.</summary>
public sealed class SystemStateGrpcService(SystemStateStore store) : SystemStateService.SystemStateServiceBase
{
    public override async Task<GetSystemStateResponse> GetSystemState(GetSystemStateRequest request, ServerCallContext context)
    {
        var latest = await store.LatestAsync(context.CancellationToken) ?? throw new NotFoundException("system_state", "current");
        return new GetSystemStateResponse { State = SystemStateFormat.ToProto(latest) };
    }

    public override async Task<ListSystemStateHistoryResponse> ListSystemStateHistory(ListSystemStateHistoryRequest request, ServerCallContext context)
    {
        var v = new Violations();
        var size = v.PageSize("page_size", request.PageSize, 100, 1000);
        var after = RecoveryPlanValidation.PageToken(v, KeysetPageToken.SystemStates, request.PageToken);
        (DateTime, Guid)? before = after is { } a ? (a.CreatedAt, a.Id) : null;
        v.ThrowIfAny();
        var page = await store.HistoryAsync(size + 1, before, context.CancellationToken);
        var response = new ListSystemStateHistoryResponse();
        response.States.AddRange(page.Take(size).Select(SystemStateFormat.ToProto));
        if (page.Count > size)
        {
            var last = page[size - 1];
            response.NextPageToken = new KeysetPageToken(last.CreatedAt, last.Id).Encode(KeysetPageToken.SystemStates);
        }
        return response;
    }
}

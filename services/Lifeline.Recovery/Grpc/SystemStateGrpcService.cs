using System.Globalization;
using Grpc.Core;
using Lifeline.Recovery.SystemState;
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
        (DateTime, Guid)? before = null;
        if (request.PageToken.Length > 0)
        {
            var parts = request.PageToken.Split('_');
            if (parts.Length == 2 && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
                && ticks > 0 && ticks < DateTime.MaxValue.Ticks && Guid.TryParse(parts[1], out var id))
            {
                before = (new DateTime(ticks, DateTimeKind.Utc), id);
            }
            else
            {
                v.Add("page_token", "is not a page token returned by this service");
            }
        }
        v.ThrowIfAny();
        var page = await store.HistoryAsync(size + 1, before, context.CancellationToken);
        var response = new ListSystemStateHistoryResponse();
        response.States.AddRange(page.Take(size).Select(SystemStateFormat.ToProto));
        if (page.Count > size)
        {
            var last = page[size - 1];
            response.NextPageToken = $"{last.CreatedAt.Ticks.ToString(CultureInfo.InvariantCulture)}_{last.Id}";
        }
        return response;
    }
}

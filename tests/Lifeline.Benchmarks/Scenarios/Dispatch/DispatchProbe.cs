using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Queue.V1;

namespace Lifeline.Benchmarks.Scenarios.Dispatch;

/// <summary>
/// Whether the queue service implements QueueService.Dispatch: a stream opened for a task type nobody enqueues either
/// fails at once with UNIMPLEMENTED (the contract is there, the server is not), or stays open, pushing nothing, until the
/// probe's short deadline. Asked once, before a dispatch row enqueues its backlog.
/// </summary>
internal static class DispatchProbe
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(2);

    /// <summary>Null when the service dispatches; otherwise why the dispatch rows cannot run.</summary>
    public static async Task<string?> UnavailableAsync(QueueConnection connection, CancellationToken ct)
    {
        using var call = connection.Queue.Dispatch(new CallOptions(deadline: DateTime.UtcNow + Patience, cancellationToken: ct));
        try
        {
            await call.RequestStream.WriteAsync(new DispatchRequest
            {
                Open = new DispatchOpen { WorkerId = "bench-dispatch-probe", TaskTypes = { "bench-dispatch-probe" }, Slots = 1 },
            }, ct);
            await call.ResponseStream.MoveNext(ct);
            return null;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unimplemented)
        {
            return $"the queue service does not implement QueueService.Dispatch (UNIMPLEMENTED{(ex.Status.Detail.Length > 0 ? $": {ex.Status.Detail}" : "")})";
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded)
        {
            return null; // open, and nothing to push: it dispatches
        }
        catch (InvalidOperationException) when (call.GetStatus().StatusCode == StatusCode.Unimplemented)
        {
            // The write raced the server's immediate UNIMPLEMENTED.
            return "the queue service does not implement QueueService.Dispatch (UNIMPLEMENTED)";
        }
    }
}

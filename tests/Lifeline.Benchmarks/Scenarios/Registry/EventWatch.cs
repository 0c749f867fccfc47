using System.Collections.Concurrent;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>An event of a WatchWorkers stream and when this client received it (UTC).</summary>
internal sealed record ReceivedEvent(WorkerEvent Event, DateTime ReceivedAt);

/// <summary>A WatchWorkers stream read in the background: every event it delivers, with its arrival time.</summary>
internal sealed class EventWatch : IAsyncDisposable
{
    private readonly ConcurrentQueue<ReceivedEvent> _events = new();
    private readonly CancellationTokenSource _stop;
    private readonly AsyncServerStreamingCall<WatchWorkersResponse> _call;
    private readonly Task _reader;

    public EventWatch(RegistryConnection connection, IEnumerable<WorkerEventType> types, CancellationToken ct)
    {
        _stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var request = new WatchWorkersRequest();
        request.EventTypes.AddRange(types);
        _call = connection.Registry.WatchWorkers(request, RegistryConnection.Stream(_stop.Token));
        _reader = Task.Run(ReadAsync, CancellationToken.None);
    }

    /// <summary>Set when the stream failed (not when it was stopped): the events are then incomplete.</summary>
    public string? Failure { get; private set; }

    public IReadOnlyList<ReceivedEvent> Events => _events.ToArray();

    /// <summary>Waits until <paramref name="done"/> holds for the events so far, or the time is up; false then.</summary>
    public async Task<bool> WaitUntilAsync(Func<IReadOnlyList<ReceivedEvent>, bool> done, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!done(Events))
        {
            if (DateTime.UtcNow >= deadline || Failure is not null)
            {
                return false;
            }

            await Task.Delay(20, ct);
        }

        return true;
    }

    private async Task ReadAsync()
    {
        try
        {
            await foreach (var message in _call.ResponseStream.ReadAllAsync(_stop.Token))
            {
                _events.Enqueue(new ReceivedEvent(message.Event, DateTime.UtcNow));
            }

            Failure = "the server ended the WatchWorkers stream";
        }
        catch (RpcException) when (_stop.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (RpcException ex)
        {
            Failure = $"WatchWorkers failed: {ex.StatusCode} {ex.Status.Detail}";
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _reader;
        _call.Dispose();
        _stop.Dispose();
    }
}

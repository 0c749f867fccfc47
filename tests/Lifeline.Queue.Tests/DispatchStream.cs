using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A worker's side of QueueService.Dispatch for tests: one real bidirectional call, a background reader that files
/// pushed tasks and acks, and a count of the tasks the worker holds (pushed minus complete/fail/release sent).
/// </summary>
internal sealed class DispatchStream : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<DispatchRequest, DispatchResponse> _call;
    private readonly Channel<V1.Task> _tasks = Channel.CreateUnbounded<V1.Task>();
    private readonly ConcurrentDictionary<long, TaskCompletionSource<DispatchAck>> _acks = new();
    private readonly SemaphoreSlim _sending = new(1, 1);
    private long _nextRequestId;
    private int _held;
    private int _maxHeld;

    private DispatchStream(AsyncDuplexStreamingCall<DispatchRequest, DispatchResponse> call, bool read)
    {
        _call = call;
        Ended = read ? ReadAsync() : System.Threading.Tasks.Task.FromResult<RpcException?>(null);
    }

    /// <summary>Completes when the queue ends the stream: null when it ended with OK, else its error.</summary>
    public Task<RpcException?> Ended { get; }

    /// <summary>Tasks pushed and not yet ended by a complete, fail or release sent on this stream.</summary>
    public int Held => Volatile.Read(ref _held);

    /// <summary>The most tasks held at once so far.</summary>
    public int MaxHeld => Volatile.Read(ref _maxHeld);

    /// <summary>Every task pushed so far, in order.</summary>
    public ConcurrentQueue<V1.Task> Pushed { get; } = new();

    public static Task<DispatchStream> OpenAsync(QueueService.QueueServiceClient client, string worker, string[] types, int slots,
        double leaseSeconds = 30) =>
        StartAsync(client, Open(worker, types, slots, leaseSeconds));

    /// <summary>Starts a call and sends <paramref name="first"/> (normally `open`); <paramref name="read"/> false leaves the responses unread.</summary>
    public static async Task<DispatchStream> StartAsync(QueueService.QueueServiceClient client, DispatchRequest first, bool read = true)
    {
        var stream = new DispatchStream(client.Dispatch(), read);
        try
        {
            await stream.SendAsync(first);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            // Refused before the first message was read: the error is the call's status (see Ended).
        }
        return stream;
    }

    public static DispatchRequest Open(string worker, string[] types, int slots, double leaseSeconds = 30)
    {
        var open = new DispatchOpen { WorkerId = worker, Slots = slots, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(leaseSeconds)) };
        open.TaskTypes.AddRange(types);
        return new DispatchRequest { Open = open };
    }

    public async Task SendAsync(DispatchRequest request)
    {
        await _sending.WaitAsync();
        try
        {
            await _call.RequestStream.WriteAsync(request);
        }
        finally
        {
            _sending.Release();
        }
    }

    /// <summary>Sends a holder's call and waits for its ack.</summary>
    public async Task<DispatchAck> CallAsync(DispatchRequest request, TimeSpan? timeout = null)
    {
        request.RequestId = Interlocked.Increment(ref _nextRequestId);
        var ack = _acks.GetOrAdd(request.RequestId, _ => new TaskCompletionSource<DispatchAck>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (request.KindCase is DispatchRequest.KindOneofCase.Complete or DispatchRequest.KindOneofCase.Fail or DispatchRequest.KindOneofCase.Release)
        {
            Interlocked.Decrement(ref _held);
        }
        await SendAsync(request);
        var answered = await System.Threading.Tasks.Task.WhenAny(ack.Task, Ended, System.Threading.Tasks.Task.Delay(timeout ?? TimeSpan.FromSeconds(30)));
        if (answered != ack.Task)
        {
            throw new TimeoutException($"no ack for request {request.RequestId} ({request.KindCase}); stream ended: {Ended.IsCompleted}");
        }
        return await ack.Task;
    }

    /// <summary>The ack received for a request sent with <see cref="SendAsync"/>, if any.</summary>
    public DispatchAck? AckOf(long requestId) =>
        _acks.TryGetValue(requestId, out var ack) && ack.Task.IsCompletedSuccessfully ? ack.Task.Result : null;

    public Task<DispatchAck> CompleteAsync(V1.Task task, string result = "", long? token = null) =>
        CallAsync(new DispatchRequest { Complete = new CompleteTaskRequest { TaskId = task.Id, FencingToken = token ?? task.FencingToken, Result = result } });

    public Task<DispatchAck> FailAsync(V1.Task task, bool retryable, long? token = null, TimeSpan? retryAfter = null) =>
        CallAsync(new DispatchRequest
        {
            Fail = new FailTaskRequest
            {
                TaskId = task.Id,
                FencingToken = token ?? task.FencingToken,
                Error = new Common.V1.ErrorDetail { Code = "TEST_FAILURE", Message = "failed on purpose", Retryable = retryable },
                RetryAfter = retryAfter is { } after ? Duration.FromTimeSpan(after) : null,
            },
        });

    public Task<DispatchAck> ReleaseAsync(V1.Task task, long? token = null) =>
        CallAsync(new DispatchRequest { Release = new ReleaseTaskRequest { TaskId = task.Id, FencingToken = token ?? task.FencingToken, Reason = "test" } });

    public Task<DispatchAck> ExtendAsync(V1.Task task, double leaseSeconds, long? token = null) =>
        CallAsync(new DispatchRequest
        {
            ExtendLease = new ExtendLeaseRequest
            {
                TaskId = task.Id, FencingToken = token ?? task.FencingToken, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(leaseSeconds)),
            },
        });

    public Task<DispatchAck> ProgressAsync(V1.Task task, int percent, long? token = null) =>
        CallAsync(new DispatchRequest { Progress = new ReportProgressRequest { TaskId = task.Id, FencingToken = token ?? task.FencingToken, Percent = percent } });

    public Task CapacityAsync(int slots) => SendAsync(new DispatchRequest { Capacity = new DispatchCapacity { Slots = slots } });

    /// <summary>The next pushed task, or a timeout.</summary>
    public async Task<V1.Task> NextTaskAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        try
        {
            return await _tasks.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no task pushed within {timeout ?? TimeSpan.FromSeconds(30)}; stream ended: {Ended.IsCompleted}");
        }
    }

    /// <summary>The next <paramref name="count"/> pushed tasks.</summary>
    public async Task<List<V1.Task>> TasksAsync(int count, TimeSpan? timeout = null)
    {
        var tasks = new List<V1.Task>(count);
        for (var i = 0; i < count; i++)
        {
            tasks.Add(await NextTaskAsync(timeout));
        }
        return tasks;
    }

    /// <summary>True when no task is pushed within <paramref name="wait"/>.</summary>
    public async Task<bool> NothingPushedWithinAsync(TimeSpan wait)
    {
        using var cts = new CancellationTokenSource(wait);
        try
        {
            await _tasks.Reader.WaitToReadAsync(cts.Token);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    /// <summary>Half-closes the stream (the worker is done) and waits for the queue to end it.</summary>
    public async Task<RpcException?> CloseAsync()
    {
        await _sending.WaitAsync();
        try
        {
            await _call.RequestStream.CompleteAsync();
        }
        finally
        {
            _sending.Release();
        }
        return await Ended;
    }

    /// <summary>Breaks the stream as a crashed worker or a cut network would (the call is cancelled).</summary>
    public void Kill() => _call.Dispose();

    private async Task<RpcException?> ReadAsync()
    {
        try
        {
            await foreach (var response in _call.ResponseStream.ReadAllAsync())
            {
                if (response.KindCase == DispatchResponse.KindOneofCase.Task)
                {
                    var held = Interlocked.Increment(ref _held);
                    InterlockedMax(ref _maxHeld, held);
                    Pushed.Enqueue(response.Task);
                    _tasks.Writer.TryWrite(response.Task);
                }
                else
                {
                    _acks.GetOrAdd(response.Ack.RequestId, _ => new TaskCompletionSource<DispatchAck>(TaskCreationOptions.RunContinuationsAsynchronously))
                        .TrySetResult(response.Ack);
                }
            }
            return null;
        }
        catch (RpcException ex)
        {
            return ex;
        }
        finally
        {
            _tasks.Writer.TryComplete();
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _call.Dispose();
        await ((Task)Ended).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}

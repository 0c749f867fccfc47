using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using Status = Grpc.Core.Status;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Worker.Internal;

/// <summary>
/// One <c>QueueService/Dispatch</c> stream: the queue pushes tasks (leased and started) while the stream has free slots;
/// holder calls (complete, fail, progress, extend_lease, release) go out as messages and are answered by acks carrying
/// their <c>request_id</c>. A call whose ack has not come when the stream ends, breaks or its deadline passes fails as
/// <c>UNAVAILABLE</c> / <c>DEADLINE_EXCEEDED</c> — transient: the caller tries again (on the next stream, or unary), and
/// the queue's fencing makes the repeat harmless. A refusal in an ack is thrown as the unary call would have thrown it.
/// </summary>
internal sealed class DispatchStream : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<DispatchRequest, DispatchResponse> _call;
    private readonly Channel<Queue.V1.Task> _tasks = Channel.CreateUnbounded<Queue.V1.Task>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<long, TaskCompletionSource<DispatchAck>> _acks = new();
    private readonly SemaphoreSlim _sending = new(1, 1);
    private readonly Lock _lock = new();
    private readonly HashSet<string> _held = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _ended = new();
    private long _nextRequestId;
    private int _sentSlots;
    private volatile bool _open = true;

    private DispatchStream(AsyncDuplexStreamingCall<DispatchRequest, DispatchResponse> call, int slots)
    {
        _call = call;
        _sentSlots = slots;
        Completion = ReadAsync();
    }

    /// <summary>Ends when the queue ends the stream: null when it ended with OK, else why it ended.</summary>
    public Task<RpcException?> Completion { get; }

    /// <summary>True until the stream ends, breaks or is closed: calls may go over it.</summary>
    public bool IsOpen => _open;

    /// <summary>The tasks the queue pushed, in order.</summary>
    public ChannelReader<Queue.V1.Task> Tasks => _tasks.Reader;

    /// <summary>Tasks pushed on this stream whose complete, fail or release has not been sent on it: the queue counts each against the slots.</summary>
    public int Held
    {
        get
        {
            lock (_lock)
            {
                return _held.Count;
            }
        }
    }

    /// <summary>The slot count the queue was last told.</summary>
    public int Slots => Volatile.Read(ref _sentSlots);

    /// <summary>Opens a stream (the call, then <c>open</c>); a refusal surfaces in <see cref="Completion"/>.</summary>
    public static async Task<DispatchStream> OpenAsync(QueueService.QueueServiceClient queue, string workerId, IEnumerable<string> taskTypes, int slots,
        TimeSpan leaseDuration, CancellationToken cancellationToken)
    {
        var stream = new DispatchStream(queue.Dispatch(cancellationToken: cancellationToken), slots);
        var open = new DispatchOpen { WorkerId = workerId, Slots = slots, LeaseDuration = Duration.FromTimeSpan(leaseDuration) };
        open.TaskTypes.AddRange(taskTypes);
        await stream.TrySendAsync(new DispatchRequest { Open = open }).ConfigureAwait(false);
        return stream;
    }

    /// <summary>Sets the slot count (nothing is sent when it is unchanged).</summary>
    public async Task SetSlotsAsync(int slots)
    {
        if (Interlocked.Exchange(ref _sentSlots, slots) != slots)
        {
            await TrySendAsync(new DispatchRequest { Capacity = new DispatchCapacity { Slots = slots } }).ConfigureAwait(false);
        }
    }

    /// <summary>True when the task was pushed on this stream and its slot is still taken.</summary>
    public bool Holds(string taskId)
    {
        lock (_lock)
        {
            return _held.Contains(taskId);
        }
    }

    public async Task<CompleteTasksResponse> CompleteTasksAsync(CompleteTasksRequest request, CallOptions options)
    {
        // One message per completion: the queue applies them together (they meet in its group commits).
        var acks = await Task.WhenAll(request.Completions.Select(c => CallAsync(
            new DispatchRequest { Complete = new CompleteTaskRequest { TaskId = c.TaskId, FencingToken = c.FencingToken, Result = c.Result } },
            c.TaskId, endsAttempt: true, options))).ConfigureAwait(false);
        var response = new CompleteTasksResponse();
        foreach (var ack in acks)
        {
            response.Results.Add(new TaskCompletionResult { TaskId = ack.TaskId, Accepted = ack.Accepted, Code = ack.Code, Reason = ack.Reason, Message = ack.Message });
            response.AcceptedCount += ack.Accepted ? 1 : 0;
        }

        return response;
    }

    public async Task<FailTaskResponse> FailTaskAsync(FailTaskRequest request, CallOptions options)
    {
        var ack = Accepted(await CallAsync(new DispatchRequest { Fail = request }, request.TaskId, endsAttempt: true, options).ConfigureAwait(false));
        return new FailTaskResponse { Task = ack.Task, WillRetry = ack.WillRetry };
    }

    public async Task<ReleaseTaskResponse> ReleaseTaskAsync(ReleaseTaskRequest request, CallOptions options) =>
        new() { Task = Accepted(await CallAsync(new DispatchRequest { Release = request }, request.TaskId, endsAttempt: true, options).ConfigureAwait(false)).Task };

    public async Task<ExtendLeaseResponse> ExtendLeaseAsync(ExtendLeaseRequest request, CallOptions options) =>
        new() { Task = Accepted(await CallAsync(new DispatchRequest { ExtendLease = request }, request.TaskId, endsAttempt: false, options).ConfigureAwait(false)).Task };

    public async Task<ReportProgressResponse> ReportProgressAsync(ReportProgressRequest request, CallOptions options) =>
        new() { Task = Accepted(await CallAsync(new DispatchRequest { Progress = request }, request.TaskId, endsAttempt: false, options).ConfigureAwait(false)).Task };

    /// <summary>Half-closes the stream (no more tasks; the queue answers what was sent, then ends it) and waits for the end, at most <paramref name="wait"/>.</summary>
    public async Task CloseAsync(TimeSpan wait)
    {
        _open = false;
        await _sending.WaitAsync().ConfigureAwait(false);
        try
        {
            await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
        {
            // Already over.
        }
        finally
        {
            _sending.Release();
        }

        try
        {
            await Completion.WaitAsync(wait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            _call.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _open = false;
        _call.Dispose();
        await ((Task)Completion).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _sending.Dispose();
        _ended.Dispose();
    }

    private async Task<DispatchAck> CallAsync(DispatchRequest request, string taskId, bool endsAttempt, CallOptions options)
    {
        if (!_open)
        {
            throw Broken("the dispatch stream is closed");
        }

        request.RequestId = Interlocked.Increment(ref _nextRequestId);
        var ack = new TaskCompletionSource<DispatchAck>(TaskCreationOptions.RunContinuationsAsynchronously);
        _acks[request.RequestId] = ack;
        try
        {
            if (endsAttempt)
            {
                lock (_lock)
                {
                    _held.Remove(taskId);
                }
            }

            if (!await TrySendAsync(request).ConfigureAwait(false))
            {
                throw Broken("the dispatch stream broke before the request was sent");
            }

            var wait = options.Deadline is { } deadline && deadline != DateTime.MaxValue ? deadline - DateTime.UtcNow : Timeout.InfiniteTimeSpan;
            try
            {
                return await ack.Task.WaitAsync(wait < TimeSpan.Zero ? TimeSpan.Zero : wait, options.CancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                throw new RpcException(new Status(StatusCode.DeadlineExceeded, "no answer on the dispatch stream before the deadline"));
            }
        }
        finally
        {
            _acks.TryRemove(request.RequestId, out _);
        }
    }

    private async Task<bool> TrySendAsync(DispatchRequest request)
    {
        await _sending.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_ended.IsCancellationRequested)
            {
                return false;
            }

            await _call.RequestStream.WriteAsync(request).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            // The stream is over (its status is in Completion).
            _open = false;
            return false;
        }
        finally
        {
            _sending.Release();
        }
    }

    private async Task<RpcException?> ReadAsync()
    {
        RpcException? end = null;
        try
        {
            while (await _call.ResponseStream.MoveNext(CancellationToken.None).ConfigureAwait(false))
            {
                var response = _call.ResponseStream.Current;
                if (response.KindCase == DispatchResponse.KindOneofCase.Task)
                {
                    lock (_lock)
                    {
                        _held.Add(response.Task.Id);
                    }

                    _tasks.Writer.TryWrite(response.Task);
                }
                else if (response.KindCase == DispatchResponse.KindOneofCase.Ack && _acks.TryGetValue(response.Ack.RequestId, out var ack))
                {
                    ack.TrySetResult(response.Ack);
                }
            }
        }
        catch (RpcException ex)
        {
            end = ex;
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or ObjectDisposedException)
        {
            end = Broken(ex.Message);
        }
        finally
        {
            _open = false;
            await _ended.CancelAsync().ConfigureAwait(false);
            _tasks.Writer.TryComplete();
            foreach (var pending in _acks.Values)
            {
                pending.TrySetException(Broken("the dispatch stream ended before the answer"));
            }
        }

        return end;
    }

    /// <summary>An accepted ack, or the refusal it carries thrown as the unary call would have thrown it.</summary>
    private static DispatchAck Accepted(DispatchAck ack)
    {
        if (ack.Accepted)
        {
            return ack;
        }

        var status = new Google.Rpc.Status
        {
            Code = ack.Code,
            Message = ack.Message,
            Details = { Any.Pack(new ErrorInfo { Reason = ack.Reason, Domain = "lifeline" }) },
        };
        throw status.ToRpcException();
    }

    private static RpcException Broken(string message) => new(new Status(StatusCode.Unavailable, message));
}

using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Processing;
using Lifeline.Queue.V1;
using QueuedTask = Lifeline.Queue.V1.Task;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Dispatch;

/// <summary>
/// A simulated worker on the queue's dispatch stream (QueueService.Dispatch, see queue.proto): it opens the stream with
/// its id, one task type and its slots; every task the queue pushes (already leased and started) is completed at once on
/// the same stream, and the ack (matched by request id) is the completion. <c>onTask</c> sees each task as it arrives.
/// To stop (once nothing of the type is pending and no task is out), it half-closes the stream and reads what is left; a
/// task pushed after that is completed with a unary CompleteTask, so none is left running.
/// </summary>
internal sealed class DispatchWorker(
    QueueConnection connection, string workerId, string taskType, int slots, TaskLedger ledger, CallErrors errors, MeasurementWindow? window,
    Action<string>? onTask, TimeSpan streamDeadline)
{
    /// <summary>From writing a complete on the stream to reading its ack.</summary>
    public const string CompleteCall = "complete→ack";

    public const string StreamCall = "Dispatch";
    private static readonly Duration LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(5));
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);
    private static readonly string Result = """{"ok":true}""";
    private readonly ConcurrentDictionary<long, long> _sentAt = new();
    private readonly SemaphoreSlim _writing = new(1, 1);
    private AsyncDuplexStreamingCall<DispatchRequest, DispatchResponse>? _call;
    private Task _reading = Task.CompletedTask;
    private long _nextRequestId;
    private volatile bool _closed;

    public CallTimings Timings { get; } = new();

    /// <summary>Set when the service answered the stream with UNIMPLEMENTED.</summary>
    public string? Unimplemented { get; private set; }

    public async Task OpenAsync(CancellationToken ct)
    {
        _call = connection.Queue.Dispatch(new CallOptions(deadline: DateTime.UtcNow + streamDeadline, cancellationToken: ct));
        try
        {
            await WriteAsync(new DispatchRequest
            {
                Open = new DispatchOpen { WorkerId = workerId, TaskTypes = { taskType }, Slots = slots, LeaseDuration = LeaseDuration },
            });
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
        {
            // The service ended the call at once (UNIMPLEMENTED, or a refusal): the reader reports its status.
        }

        _reading = Task.Run(ReadAsync, CancellationToken.None);
    }

    /// <summary>Asks for no more pushes (capacity 0); tasks already pushed are still completed.</summary>
    public async Task PauseAsync()
    {
        if (_call is null || _closed)
        {
            return;
        }

        try
        {
            await WriteAsync(new DispatchRequest { Capacity = new DispatchCapacity { Slots = 0 } });
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
        {
            // The stream already ended (its reader recorded why).
        }
    }

    /// <summary>Half-closes the stream and waits for the service to end it (completing any late push); then cancels it.</summary>
    public async Task CloseAsync()
    {
        if (_call is null)
        {
            return;
        }

        _closed = true;
        try
        {
            await _writing.WaitAsync();
            try
            {
                await _call.RequestStream.CompleteAsync();
            }
            finally
            {
                _writing.Release();
            }
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
        {
            // The stream already ended (its reader recorded why).
        }

        await Task.WhenAny(_reading, Task.Delay(CloseTimeout));
        _call.Dispose();
        await _reading;
    }

    private async Task ReadAsync()
    {
        var call = _call!;
        try
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                var message = call.ResponseStream.Current;
                switch (message.KindCase)
                {
                    case DispatchResponse.KindOneofCase.Task:
                        await TakeAsync(message.Task);
                        break;
                    case DispatchResponse.KindOneofCase.Ack:
                        Acknowledge(message.Ack);
                        break;
                    default:
                        errors.Record($"{StreamCall} sent a message with neither a task nor an ack");
                        break;
                }
            }

            if (!_closed)
            {
                errors.Record($"{StreamCall}: the service ended the stream while the worker was running");
            }
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unimplemented)
        {
            Unimplemented = ex.Status.Detail;
        }
        catch (RpcException ex) when (_closed && ex.StatusCode == StatusCode.Cancelled)
        {
            // Cancelled by CloseAsync after its wait.
        }
        catch (RpcException ex)
        {
            errors.Record(StreamCall, ex);
        }
    }

    private async Task TakeAsync(QueuedTask task)
    {
        onTask?.Invoke(task.Payload);
        ledger.Leased(task.Id);
        if (task.Status != TaskStatus.Running)
        {
            errors.Record($"{StreamCall} pushed a task {task.Status}, not running");
        }

        var complete = new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = Result };
        if (_closed)
        {
            await CompleteUnaryAsync(complete);
            return;
        }

        var requestId = Interlocked.Increment(ref _nextRequestId);
        _sentAt[requestId] = Stopwatch.GetTimestamp();
        try
        {
            await WriteAsync(new DispatchRequest { RequestId = requestId, Complete = complete });
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
        {
            // The stream is going away: the task is still ours (its lease runs on), so complete it by the unary call.
            _sentAt.TryRemove(requestId, out _);
            await CompleteUnaryAsync(complete);
        }
    }

    private void Acknowledge(DispatchAck ack)
    {
        if (_sentAt.TryRemove(ack.RequestId, out var sentAt))
        {
            if (window is null || window.Contains(sentAt))
            {
                Timings.Record(CompleteCall, sentAt);
            }
        }
        else
        {
            errors.Record($"{StreamCall} acked request {ack.RequestId}, which this worker did not send (or acked it twice)");
        }

        if (ack.Accepted && ack.Task is { Status: TaskStatus.Completed })
        {
            ledger.Completed(ack.TaskId);
        }
        else
        {
            ledger.Refused();
            errors.Record(ack.Accepted
                ? $"{StreamCall} acked a complete as accepted but the task is {ack.Task?.Status.ToString() ?? "missing"}"
                : $"{StreamCall} refused a complete: {(StatusCode)ack.Code} {ack.Reason} {ack.Message}");
        }
    }

    private async Task CompleteUnaryAsync(CompleteTaskRequest request)
    {
        try
        {
            var response = await connection.Queue.CompleteTaskAsync(request, QueueConnection.Call(CancellationToken.None));
            if (response.Task is { Status: TaskStatus.Completed })
            {
                ledger.Completed(request.TaskId);
            }
        }
        catch (RpcException ex)
        {
            errors.Record(QueueWorker.CompleteCall, ex);
        }
    }

    private async Task WriteAsync(DispatchRequest request)
    {
        await _writing.WaitAsync();
        try
        {
            await _call!.RequestStream.WriteAsync(request);
        }
        finally
        {
            _writing.Release();
        }
    }
}

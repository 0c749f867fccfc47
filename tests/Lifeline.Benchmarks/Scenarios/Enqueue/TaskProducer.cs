using System.Diagnostics;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Benchmarks.Scenarios.Enqueue;

/// <summary>
/// Enqueues <paramref name="total"/> tasks of one type from concurrent callers, each claiming the next
/// slice of <paramref name="batchSize"/>: one EnqueueTask per task when the size is 1, else one
/// EnqueueTasks per slice. A failed call is recorded, not retried, so the stored counts show the loss.
/// <see cref="Stop"/> ends it early without cancelling a call in flight (so the count of tasks created stays exact);
/// with a <paramref name="window"/>, only the calls that started in it are timed.
/// </summary>
internal sealed class TaskProducer(
    QueueConnection connection, string taskType, int total, int batchSize, CallErrors errors, MeasurementWindow? window = null)
{
    public const string EnqueueCall = "EnqueueTask";
    public const string EnqueueBatchCall = "EnqueueTasks";

    // About 100 bytes of JSON, a typical small job description.
    private static readonly string PayloadPadding = new('x', 64);
    private int _claimed;
    private int _created;
    private volatile bool _stopping;

    /// <summary>Tasks the service reported as created.</summary>
    public int Created => Volatile.Read(ref _created);

    /// <summary>No new call after this; calls in flight finish.</summary>
    public void Stop() => _stopping = true;

    public async Task<IReadOnlyList<CallTimings>> RunAsync(int callers, CancellationToken ct)
    {
        var timings = Enumerable.Range(0, callers).Select(_ => new CallTimings()).ToArray();
        await Task.WhenAll(timings.Select(t => Task.Run(() => RunCallerAsync(t, ct), CancellationToken.None)));
        return timings;
    }

    private async Task RunCallerAsync(CallTimings timings, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested && !_stopping)
        {
            var first = Interlocked.Add(ref _claimed, batchSize) - batchSize;
            if (first >= total)
            {
                return;
            }

            var count = Math.Min(batchSize, total - first);
            var started = Stopwatch.GetTimestamp();
            try
            {
                if (batchSize == 1)
                {
                    var request = new EnqueueTaskRequest { Task = Spec(first) };
                    var response = await connection.Queue.EnqueueTaskAsync(request, QueueConnection.Call(ct));
                    Record(timings, EnqueueCall, started);
                    if (response.Created)
                    {
                        Interlocked.Increment(ref _created);
                    }
                    else
                    {
                        errors.Record($"{EnqueueCall} answered created=false (an existing task was returned)");
                    }
                }
                else
                {
                    var request = new EnqueueTasksRequest();
                    request.Tasks.AddRange(Enumerable.Range(first, count).Select(n => new BatchTask { Task = Spec(n) }));
                    var response = await connection.Queue.EnqueueTasksAsync(request, QueueConnection.Call(ct));
                    Record(timings, EnqueueBatchCall, started);
                    Interlocked.Add(ref _created, response.CreatedCount);
                    if (response.CreatedCount != count || response.Tasks.Count != count)
                    {
                        errors.Record($"{EnqueueBatchCall} of {count} answered created_count {response.CreatedCount} with {response.Tasks.Count} tasks");
                    }
                }
            }
            catch (RpcException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex)
            {
                errors.Record(batchSize == 1 ? EnqueueCall : EnqueueBatchCall, ex);
            }
        }
    }

    private void Record(CallTimings timings, string call, long started)
    {
        if (window is null || window.Contains(started))
        {
            timings.Record(call, started);
        }
    }

    private TaskSpec Spec(int number) =>
        new() { Type = taskType, Payload = $$"""{"n":{{number}},"order":"bench-{{number}}","note":"{{PayloadPadding}}"}""" };
}

using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Queue.V1;
using QueuedTask = Lifeline.Queue.V1.Task;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Processing;

/// <summary>
/// A simulated worker doing no work of its own: LeaseTasks (long-polling when nothing is ready; with start = true on the
/// lease-and-start path) → StartTask each (on the three-call path) → CompleteTask, or one CompleteTasks for a batch,
/// until stopped. Failed calls are recorded and retried a few times (a completion repeated with the same fencing token
/// is idempotent). <c>onTask</c> sees each task as soon as its lease returns (the handler's start).
/// </summary>
internal sealed class QueueWorker(
    QueueConnection connection, string workerId, string taskType, TaskPath path, int batchSize, TaskLedger ledger, CallErrors errors,
    MeasurementWindow? window, Action<string>? onTask)
{
    public const string LeaseCall = "LeaseTasks";
    public const string StartCall = "StartTask";
    public const string CompleteCall = "CompleteTask";
    public const string CompleteBatchCall = "CompleteTasks";
    private const int MaxAttempts = 3;
    private static readonly Duration LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(5));
    private static readonly Duration LeaseWait = Duration.FromTimeSpan(TimeSpan.FromSeconds(2));
    private static readonly string Result = """{"ok":true}""";
    private volatile bool _paused;

    /// <summary>Latencies of this worker's calls in the window; LeaseTasks only when it returned tasks (an empty one is mostly long-poll wait).</summary>
    public CallTimings Timings { get; } = new();

    /// <summary>No LeaseTasks after the current cycle (which completes what it holds); the run then ends.</summary>
    public void Pause() => _paused = true;

    public async Task RunAsync(CancellationToken ct)
    {
        var request = new LeaseTasksRequest
        {
            WorkerId = workerId,
            TaskTypes = { taskType },
            MaxTasks = batchSize,
            LeaseDuration = LeaseDuration,
            Wait = LeaseWait,
            Start = path == TaskPath.LeaseAndStart,
        };
        while (!ct.IsCancellationRequested && !_paused)
        {
            var leaseStarted = Stopwatch.GetTimestamp();
            var leased = await CallAsync(LeaseCall, options => connection.Queue.LeaseTasksAsync(request, options), ct, timed: false);
            if (leased is null || leased.Tasks.Count == 0)
            {
                // Long poll ran out: other workers hold the rest, or nothing is left.
                continue;
            }

            Record(LeaseCall, leaseStarted);
            foreach (var task in leased.Tasks)
            {
                onTask?.Invoke(task.Payload);
                ledger.Leased(task.Id);
                if (request.Start && task.Status != TaskStatus.Running)
                {
                    errors.Record($"{LeaseCall} with start = true returned a task {task.Status}, not running");
                }
            }

            if (path == TaskPath.ThreeCalls)
            {
                foreach (var task in leased.Tasks)
                {
                    var start = new StartTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken };
                    await CallAsync(StartCall, options => connection.Queue.StartTaskAsync(start, options), CancellationToken.None);
                }
            }

            // Completions are not cancelled with the run: a task this worker holds is always completed.
            if (leased.Tasks.Count == 1 && batchSize == 1)
            {
                await CompleteOneAsync(leased.Tasks[0]);
            }
            else
            {
                await CompleteAllAsync(leased.Tasks);
            }
        }
    }

    private async Task CompleteOneAsync(QueuedTask task)
    {
        var request = new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = Result };
        var response = await CallAsync(CompleteCall, options => connection.Queue.CompleteTaskAsync(request, options), CancellationToken.None);
        if (response?.Task is { Status: TaskStatus.Completed } completed)
        {
            ledger.Completed(completed.Id);
        }
        else if (response is not null)
        {
            ledger.Refused();
            errors.Record($"{CompleteCall} answered OK but the task is {response.Task?.Status.ToString() ?? "missing"}");
        }
    }

    private async Task CompleteAllAsync(IReadOnlyList<QueuedTask> tasks)
    {
        var request = new CompleteTasksRequest();
        request.Completions.AddRange(tasks.Select(t => new TaskCompletion { TaskId = t.Id, FencingToken = t.FencingToken, Result = Result }));
        var response = await CallAsync(CompleteBatchCall, options => connection.Queue.CompleteTasksAsync(request, options), CancellationToken.None);
        if (response is null)
        {
            return;
        }

        foreach (var result in response.Results)
        {
            if (result.Accepted)
            {
                ledger.Completed(result.TaskId);
            }
            else
            {
                ledger.Refused();
                errors.Record($"{CompleteBatchCall} refused a completion: {result.Reason} {result.Message}");
            }
        }

        if (response.AcceptedCount != response.Results.Count(r => r.Accepted) || response.Results.Count != tasks.Count)
        {
            errors.Record($"{CompleteBatchCall} answered {response.Results.Count} results with accepted_count {response.AcceptedCount} for {tasks.Count} completions");
        }
    }

    private void Record(string call, long started)
    {
        if (window is null || window.Contains(started))
        {
            Timings.Record(call, started);
        }
    }

    /// <summary>Null when the call failed every attempt (recorded) or the run was cancelled.</summary>
    private async Task<T?> CallAsync<T>(string name, Func<CallOptions, AsyncUnaryCall<T>> call, CancellationToken ct, bool timed = true)
        where T : class
    {
        for (var attempt = 1; ; attempt++)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                var response = await call(QueueConnection.Call(ct));
                if (timed)
                {
                    Record(name, started);
                }

                return response;
            }
            catch (RpcException) when (ct.IsCancellationRequested)
            {
                return null;
            }
            catch (RpcException ex)
            {
                errors.Record(name, ex);
                if (attempt == MaxAttempts)
                {
                    return null;
                }
            }

            await Task.Delay(50 * attempt, CancellationToken.None);
        }
    }
}

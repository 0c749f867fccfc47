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

/// <summary>How a simulated worker handles what it leases.</summary>
/// <param name="BatchSize">max_tasks per LeaseTasks; 1 completes with CompleteTask, more with one CompleteTasks.</param>
/// <param name="StartEachTask">StartTask every leased task (one call each, in order) before completing.</param>
/// <param name="LeaseAndStart">Lease with start = true: the tasks come back running, no StartTask calls.</param>
internal sealed record WorkerPlan(int BatchSize, bool StartEachTask, bool LeaseAndStart = false);

/// <summary>
/// A simulated worker doing no work of its own: LeaseTasks (long-polling when nothing is ready) →
/// StartTask each (or lease-and-start in the LeaseTasks call) → CompleteTask / CompleteTasks, until its ledger says every task is done. Failed
/// calls are recorded and retried a few times (completion with the same fencing token is idempotent).
/// </summary>
internal sealed class QueueWorker(QueueConnection connection, string workerId, string taskType, WorkerPlan plan, TaskLedger ledger, CallErrors errors)
{
    public const string LeaseCall = "LeaseTasks";
    public const string StartCall = "StartTask";
    public const string CompleteCall = "CompleteTask";
    public const string CompleteBatchCall = "CompleteTasks";
    private const int MaxAttempts = 3;
    private static readonly Duration LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(5));
    private static readonly Duration LeaseWait = Duration.FromTimeSpan(TimeSpan.FromSeconds(2));
    private static readonly string Result = """{"ok":true}""";

    /// <summary>Latencies of this worker's calls; LeaseTasks only when it returned tasks (an empty one is mostly long-poll wait).</summary>
    public CallTimings Timings { get; } = new();

    public async Task RunAsync(CancellationToken ct)
    {
        var request = new LeaseTasksRequest
        {
            WorkerId = workerId,
            TaskTypes = { taskType },
            MaxTasks = plan.BatchSize,
            LeaseDuration = LeaseDuration,
            Wait = LeaseWait,
            Start = plan.LeaseAndStart,
        };
        while (!ct.IsCancellationRequested)
        {
            var leaseStarted = Stopwatch.GetTimestamp();
            var leased = await CallAsync(LeaseCall, options => connection.Queue.LeaseTasksAsync(request, options), ct, timed: false);
            if (leased is null || leased.Tasks.Count == 0)
            {
                // Long poll ran out: other workers hold the rest, or producers are behind.
                continue;
            }

            Timings.Record(LeaseCall, leaseStarted);
            foreach (var task in leased.Tasks)
            {
                ledger.Leased(task.Id);
                if (plan.LeaseAndStart && task.Status != TaskStatus.Running)
                {
                    errors.Record($"{LeaseCall} with start = true returned a task {task.Status}, not running");
                }
            }

            if (plan.StartEachTask)
            {
                foreach (var task in leased.Tasks)
                {
                    var start = new StartTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken };
                    await CallAsync(StartCall, options => connection.Queue.StartTaskAsync(start, options), ct);
                }
            }

            if (plan.BatchSize == 1)
            {
                await CompleteOneAsync(leased.Tasks[0], ct);
            }
            else
            {
                await CompleteAllAsync(leased.Tasks, ct);
            }
        }
    }

    private async Task CompleteOneAsync(QueuedTask task, CancellationToken ct)
    {
        var request = new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = Result };
        var response = await CallAsync(CompleteCall, options => connection.Queue.CompleteTaskAsync(request, options), ct);
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

    private async Task CompleteAllAsync(IReadOnlyList<QueuedTask> tasks, CancellationToken ct)
    {
        var request = new CompleteTasksRequest();
        request.Completions.AddRange(tasks.Select(t => new TaskCompletion { TaskId = t.Id, FencingToken = t.FencingToken, Result = Result }));
        var response = await CallAsync(CompleteBatchCall, options => connection.Queue.CompleteTasksAsync(request, options), ct);
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
                    Timings.Record(name, started);
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

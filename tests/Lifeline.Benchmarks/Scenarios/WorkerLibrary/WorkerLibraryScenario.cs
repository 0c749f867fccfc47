using System.Diagnostics;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.WorkerLibrary;

/// <summary>One run of the worker-library section.</summary>
/// <param name="Mode">burst: every task enqueued at once (throughput); paced: a steady rate below it (latency without a backlog).</param>
/// <param name="EnqueueToComplete">The queue's own completed_at − created_at of each task, in seconds.</param>
internal sealed record WorkerLibraryResult(
    string Mode,
    int Workers,
    int Slots,
    int Tasks,
    double OfferedPerSecond,
    double Seconds,
    double TasksPerSecond,
    DelayDistribution? EnqueueToComplete,
    long Journaled,
    long Refused,
    long Retries,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check);

/// <summary>
/// Drives the queue through the .NET worker library: tasks are enqueued (EnqueueTasks, straight to the queue) while
/// <see cref="LibraryWorkers"/> lease, run and complete them through the gateway. Burst: all tasks enqueued as fast as
/// the producers go; the clock runs from the first enqueue to the last accepted completion. Paced: batches at a steady
/// rate for a while. Latency is the queue's own record of each task (created_at to completed_at, same clock).
/// </summary>
internal static class WorkerLibraryScenario
{
    private const int Producers = 2;

    public static async Task<WorkerLibraryResult> RunBurstAsync(
        QueueConnection queue, LibraryWorkers workers, string taskType, int slots, int tasks, int batchSize, TimeSpan timeout, CancellationToken ct)
    {
        var errors = new CallErrors();
        var before = workers.Completed;
        var trouble = workers.Trouble;
        var started = Stopwatch.GetTimestamp();
        var perProducer = (tasks + Producers - 1) / Producers;
        await Task.WhenAll(Enumerable.Range(0, Producers).Select(p =>
            EnqueueAsync(queue, taskType, Math.Min(perProducer, tasks - (p * perProducer)), batchSize, pace: null, errors, ct)));
        var finished = await WaitForCompletionsAsync(workers, before + tasks, timeout, ct);
        var seconds = ScenarioContext.SecondsSince(started, finished ?? Stopwatch.GetTimestamp());
        return await ResultAsync(queue, workers, "burst", slots, tasks, double.NaN, seconds, finished is null, taskType, trouble, errors, ct);
    }

    public static async Task<WorkerLibraryResult> RunPacedAsync(
        QueueConnection queue, LibraryWorkers workers, string taskType, int slots, double perSecond, TimeSpan duration, int batchSize,
        TimeSpan timeout, CancellationToken ct)
    {
        var errors = new CallErrors();
        var before = workers.Completed;
        var trouble = workers.Trouble;
        var tasks = Math.Max(batchSize, (int)(perSecond * duration.TotalSeconds) / batchSize * batchSize);
        var pace = TimeSpan.FromSeconds(batchSize / perSecond);
        var started = Stopwatch.GetTimestamp();
        await EnqueueAsync(queue, taskType, tasks, batchSize, pace, errors, ct);
        var finished = await WaitForCompletionsAsync(workers, before + tasks, timeout, ct);
        var seconds = ScenarioContext.SecondsSince(started, finished ?? Stopwatch.GetTimestamp());
        return await ResultAsync(queue, workers, "paced", slots, tasks, perSecond, seconds, finished is null, taskType, trouble, errors, ct);
    }

    /// <summary>Enqueues <paramref name="count"/> tasks in batches; with <paramref name="pace"/>, one batch per pace (on a fixed schedule, not after the previous call).</summary>
    private static async Task EnqueueAsync(QueueConnection queue, string taskType, int count, int batchSize, TimeSpan? pace, CallErrors errors, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var calls = new List<Task>();
        for (int sent = 0, batch = 0; sent < count; sent += batchSize, batch++)
        {
            var request = new EnqueueTasksRequest();
            for (var i = 0; i < Math.Min(batchSize, count - sent); i++)
            {
                request.Tasks.Add(new BatchTask { Task = new TaskSpec { Type = taskType, Payload = """{"n":1}""" } });
            }

            if (pace is { } every)
            {
                var due = every * batch - clock.Elapsed;
                if (due > TimeSpan.Zero)
                {
                    await Task.Delay(due, ct);
                }

                calls.Add(SendAsync(request));
            }
            else
            {
                await SendAsync(request);
            }
        }

        await Task.WhenAll(calls);

        async Task SendAsync(EnqueueTasksRequest request)
        {
            try
            {
                await queue.Queue.EnqueueTasksAsync(request, QueueConnection.Call(ct));
            }
            catch (Grpc.Core.RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record("EnqueueTasks", ex);
            }
        }
    }

    /// <summary>Polls the workers' accepted completions until <paramref name="target"/>; the timestamp it was seen, or null on timeout.</summary>
    private static async Task<long?> WaitForCompletionsAsync(LibraryWorkers workers, long target, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (workers.Completed < target)
        {
            if (deadline.Elapsed > timeout)
            {
                return null;
            }

            await Task.Delay(2, ct);
        }

        return Stopwatch.GetTimestamp();
    }

    private static async Task<WorkerLibraryResult> ResultAsync(
        QueueConnection queue, LibraryWorkers workers, string mode, int slots, int tasks, double offered, double seconds, bool timedOut, string taskType,
        (long Journaled, long Refused, long Retries) troubleBefore, CallErrors errors, CancellationToken ct)
    {
        var latencies = new List<double>(tasks);
        var statuses = new Dictionary<TaskStatus, int>();
        var pageToken = "";
        do
        {
            var page = await queue.Queue.ListTasksAsync(new ListTasksRequest { Type = taskType, PageSize = 1000, PageToken = pageToken }, QueueConnection.Call(ct));
            foreach (var task in page.Tasks)
            {
                statuses[task.Status] = statuses.GetValueOrDefault(task.Status) + 1;
                if (task.Status == TaskStatus.Completed)
                {
                    latencies.Add((task.CompletedAt.ToDateTime() - task.CreatedAt.ToDateTime()).TotalSeconds);
                }
            }

            pageToken = page.NextPageToken;
        }
        while (pageToken.Length > 0);

        var trouble = workers.Trouble;
        var (journaled, refused, retries) = (trouble.Journaled - troubleBefore.Journaled, trouble.Refused - troubleBefore.Refused, trouble.Retries - troubleBefore.Retries);
        var completed = statuses.GetValueOrDefault(TaskStatus.Completed);
        var verified = !timedOut && completed == tasks && statuses.Count == 1 && journaled == 0 && refused == 0 && errors.Count == 0;
        var check = verified
            ? $"ok: {tasks} completed once each"
            : $"{(timedOut ? $"TIMEOUT after {seconds:0} s; " : "")}stored {string.Join(", ", statuses.Select(s => $"{s.Value} {s.Key}"))}, " +
              $"expected {tasks} completed; {journaled} journaled, {refused} refused, {errors.Count} errors";
        return new WorkerLibraryResult(mode, workers.Workers.Count, slots, tasks, offered, seconds, tasks / seconds,
            DelayDistribution.Of(latencies), journaled, refused, retries, errors.Count, errors.Distinct, verified, check);
    }
}

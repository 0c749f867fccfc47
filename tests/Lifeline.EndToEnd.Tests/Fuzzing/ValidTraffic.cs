using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// Ordinary work on a second tenant while the fuzzing goes on: a registered worker (kept alive by heartbeats) enqueues
/// a task, leases what is ready of its type (started), completes it, again and again; at the end it drains what is
/// left. Every call must succeed, and every task must be completed exactly by this loop.
/// </summary>
internal sealed class ValidTraffic(SuiteFixture suite, string keyName, string run, Stopwatch clock)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    private const int MaxFailuresKept = 20;

    private readonly QueueService.QueueServiceClient _queue = suite.Queue(keyName);
    private readonly RegistryService.RegistryServiceClient _registry = suite.Registry(keyName);
    private readonly string _taskType = $"fuzz.valid.{run}";
    private readonly List<string> _failures = [];
    private readonly HashSet<string> _enqueued = [];
    private readonly HashSet<string> _completed = [];
    private int _failureCount;
    private string _workerId = "";
    private long _epoch;

    public IReadOnlyList<string> Failures => _failures;

    /// <summary>Failed calls and wrong answers, also those beyond the <see cref="MaxFailuresKept"/> kept.</summary>
    public int FailureCount => _failureCount;

    public int Completed => _completed.Count;

    /// <summary>Registers the worker and runs one cycle; throws when even that fails (the suite does not work at all).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var registered = await _registry.RegisterWorkerAsync(
            new RegisterWorkerRequest { Name = $"fuzz-valid-{run}", Type = WorkerType.Standalone, Capabilities = { _taskType } },
            deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken);
        _workerId = registered.Worker.Id;
        _epoch = registered.Worker.SessionEpoch;
        await EnqueueAsync(0, cancellationToken);
        if (await LeaseAndCompleteAsync(0, cancellationToken) == 0)
        {
            throw new InvalidOperationException($"Valid traffic does not work before any fuzzing: {string.Join("; ", _failures)}");
        }
    }

    /// <summary>
    /// Cycles (and heartbeats) until <paramref name="stop"/> is cancelled; failures are collected, not thrown. A cycle
    /// in progress when asked to stop is finished (its calls run under <paramref name="cancellationToken"/>): a lease
    /// call cancelled mid-way may have leased on the server, and its task would then be held for the lease's length.
    /// </summary>
    public async Task RunAsync(CancellationToken stop, CancellationToken cancellationToken)
    {
        var heartbeats = HeartbeatAsync(stop);
        for (var cycle = 1; !stop.IsCancellationRequested; cycle++)
        {
            await EnqueueAsync(cycle, cancellationToken);
            await LeaseAndCompleteAsync(cycle, cancellationToken);
        }

        await heartbeats;
    }

    /// <summary>Leases and completes what is left, checks every task read back, deregisters the worker.</summary>
    public async Task FinishAsync(CancellationToken cancellationToken)
    {
        for (var round = 0; round < 10 && _enqueued.Except(_completed).Any(); round++)
        {
            await LeaseAndCompleteAsync(-1, cancellationToken);
        }

        foreach (var id in _enqueued.Except(_completed))
        {
            Fail($"task {id} was enqueued but never leased and completed");
        }

        foreach (var id in _completed)
        {
            var task = (await _queue.GetTaskAsync(new GetTaskRequest { TaskId = id }, deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken)).Task;
            if (task.Status != Queue.V1.TaskStatus.Completed || !SuiteCalls.SameJson("""{"ok":true}""", task.Result))
            {
                Fail($"task {id} is {task.Status} with result '{task.Result}' after its completion was accepted");
            }
        }

        await CallAsync("DeregisterWorker", -1, async () =>
            await _registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = _workerId }, deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken),
            cancellationToken);
    }

    private async Task EnqueueAsync(int cycle, CancellationToken cancellationToken)
    {
        var enqueued = await CallAsync("EnqueueTask", cycle, async () => await _queue.EnqueueTaskAsync(
            new EnqueueTaskRequest { Task = new TaskSpec { Type = _taskType, Payload = $$"""{"cycle":{{cycle}}}""" } },
            deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken), cancellationToken);
        if (enqueued is not null)
        {
            _enqueued.Add(enqueued.Task.Id);
        }
    }

    /// <summary>Leases up to ten ready tasks of the type and completes each; returns how many were completed.</summary>
    private async Task<int> LeaseAndCompleteAsync(int cycle, CancellationToken cancellationToken)
    {
        var leased = await CallAsync("LeaseTasks", cycle, async () => await _queue.LeaseTasksAsync(
            new LeaseTasksRequest
            {
                WorkerId = _workerId, TaskTypes = { _taskType }, MaxTasks = 10, Start = true,
                LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(60)), Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(cycle < 0 ? 1 : 5)),
            },
            deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken), cancellationToken);
        var completed = 0;
        foreach (var task in leased?.Tasks ?? [])
        {
            if (!_enqueued.Contains(task.Id))
            {
                // Only this loop enqueues this type: a task it does not know was created by a call that was answered with an error.
                Fail($"leased task {task.Id}, which no successful EnqueueTask returned");
            }

            var done = await CallAsync("CompleteTask", cycle, async () => await _queue.CompleteTaskAsync(
                new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = """{"ok":true}""" },
                deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken), cancellationToken);
            if (done is not null && _completed.Add(task.Id))
            {
                completed++;
            }
        }

        return completed;
    }

    /// <summary>The call's answer, or null (recorded as a failure) when it failed; null without a failure when stopping.</summary>
    private async Task<T?> CallAsync<T>(string rpc, int cycle, Func<Task<T>> call, CancellationToken cancellationToken) where T : class
    {
        var started = clock.Elapsed;
        try
        {
            return await call();
        }
        catch (Exception ex) when (cancellationToken.IsCancellationRequested && ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            return null;
        }
        catch (RpcException ex)
        {
            Fail($"+{started.TotalSeconds:0.0}s cycle {cycle}: {rpc} answered {ex.StatusCode} after {(clock.Elapsed - started).TotalSeconds:0.0} s: {ex.Status.Detail}");
            return null;
        }
    }

    private void Fail(string failure)
    {
        lock (_failures)
        {
            _failureCount++;
            if (_failures.Count < MaxFailuresKept)
            {
                _failures.Add(failure);
            }
        }
    }

    private async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(3), cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            await CallAsync("Heartbeat", 0, async () => await _registry.HeartbeatAsync(
                new HeartbeatRequest { WorkerId = _workerId, SessionEpoch = _epoch, Status = WorkerStatus.Online },
                deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken), cancellationToken);
        }
    }
}

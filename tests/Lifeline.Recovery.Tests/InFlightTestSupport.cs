using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.Recovery.Tests;

/// <summary>A registered worker that heartbeats until stopped (stopping = a crash: no deregistration).</summary>
internal sealed class LiveWorker : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _beating;

    private LiveWorker(Worker worker, RegistryService.RegistryServiceClient registry)
    {
        Worker = worker;
        _beating = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    await registry.HeartbeatAsync(new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Online });
                    await Task.Delay(300, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (RpcException)
                {
                    // the registry may be restarting; keep beating
                }
            }
        });
    }

    public Worker Worker { get; }
    public string Id => Worker.Id;

    public static async Task<LiveWorker> StartAsync(RecoveryEnvironment env, string type, string tenant = "default")
    {
        var registry = env.RegistryClient(tenant);
        var request = new RegisterWorkerRequest { Name = $"w-{Guid.NewGuid():N}"[..24], Type = WorkerType.Standalone };
        request.Capabilities.Add(type);
        var worker = (await registry.RegisterWorkerAsync(request)).Worker;
        return new LiveWorker(worker, registry);
    }

    /// <summary>Stops heartbeating, as a crashed worker does.</summary>
    public async Task CrashAsync()
    {
        await _stop.CancelAsync();
        await _beating;
    }

    public async ValueTask DisposeAsync()
    {
        await CrashAsync();
        _stop.Dispose();
    }
}

internal static class InFlightTestSupport
{
    public static string NewType() => $"recovery.test.{Guid.NewGuid():N}"[..40];

    public static async Task<Queue.V1.Task> EnqueueAsync(this QueueService.QueueServiceClient queue, string type, string workflowId = "", int maxRetries = 5, int timeoutSeconds = 0)
    {
        var spec = new TaskSpec { Type = type, Payload = """{"n":1}""", MaxRetries = maxRetries, WorkflowId = workflowId };
        if (timeoutSeconds > 0)
        {
            spec.TimeoutSeconds = timeoutSeconds;
        }
        return (await queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = spec })).Task;
    }

    public static async Task<Queue.V1.Task> LeaseOneAsync(this QueueService.QueueServiceClient queue, string workerId, string type, bool start = true, int leaseSeconds = 60)
    {
        var leased = await queue.LeaseTasksAsync(new LeaseTasksRequest
        {
            WorkerId = workerId, TaskTypes = { type }, MaxTasks = 1, Start = start,
            LeaseDuration = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(leaseSeconds)),
            Wait = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(5)),
        });
        return Assert.Single(leased.Tasks);
    }

    /// <summary>
    /// The task's recorded actions once there are <paramref name="count"/>: an action is recorded right after the queue
    /// call that moved the task returns, so a fast rescuer may lease the task a moment before the record exists.
    /// </summary>
    public static async Task<List<Recovery.V1.RecoveryAction>> ActionsAsync(this RecoveryEnvironment env, string taskId, int count) =>
        (await EventuallyAsync(async () =>
        {
            var listed = (await env.RecoveryClient().ListRecoveryActionsAsync(new Recovery.V1.ListRecoveryActionsRequest { TaskId = taskId })).Actions;
            return listed.Count >= count ? listed : null;
        }, TimeSpan.FromSeconds(5), $"{count} recorded action(s) of task {taskId}")).ToList();

    public static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (await probe() is { } value)
            {
                return value;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds:0.#} s waiting for {what}");
            }
            await Task.Delay(100);
        }
    }

    public static string? Reason(this RpcException e) => e.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason;

    public static BadRequest? BadRequest(this RpcException e) => e.GetRpcStatus()?.GetDetail<BadRequest>();
}

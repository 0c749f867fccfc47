using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>The queue and the registry together: who may lease, and how outcomes drive the breaker.</summary>
public sealed class QueueIntegrationTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private RegistryService.RegistryServiceClient Registry => env.Registry.Registry();
    private QueueService.QueueServiceClient Queue => env.Queue.Queue();

    private static string NewType(string prefix) => $"{prefix}.{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    private Task<LeaseTasksResponse> LeaseAsync(string workerId, params string[] types)
    {
        var request = new LeaseTasksRequest { WorkerId = workerId, MaxTasks = 10, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(30)) };
        request.TaskTypes.AddRange(types);
        return Queue.LeaseTasksAsync(request).ResponseAsync;
    }

    private async Task EnqueueAsync(string type) =>
        await Queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = type, MaxRetries = 0 } });

    private async Task<string> RefusalReasonAsync(string workerId, params string[] types) =>
        (await RefusedAsync(() => LeaseAsync(workerId, types), StatusCode.FailedPrecondition)).ErrorInfo().Reason;

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_queue_refuses_unknown_draining_offline_and_deregistered_workers()
    {
        var type = NewType("elig");
        await EnqueueAsync(type);
        Assert.Equal("WORKER_NOT_REGISTERED", await RefusalReasonAsync(Guid.NewGuid().ToString(), type));

        var draining = await Registry.RegisterAsync(Registration(capabilities: type));
        await Registry.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = draining.Id });
        Assert.Equal("WORKER_DRAINING", await RefusalReasonAsync(draining.Id, type));

        var gone = await Registry.RegisterAsync(Registration(capabilities: type));
        await Registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = gone.Id });
        Assert.Equal("WORKER_DEREGISTERED", await RefusalReasonAsync(gone.Id, type));

        var silent = await Registry.RegisterAsync(Registration(capabilities: type));
        Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(silent.Id), "lost") == 1, TimeSpan.FromSeconds(8)));
        Assert.Equal("WORKER_OFFLINE", await RefusalReasonAsync(silent.Id, type));

        // Nothing was leased by any of them.
        Assert.Equal(1, (await Queue.GetQueueStatsAsync(new GetQueueStatsRequest { Type = type })).Totals["TASK_STATUS_PENDING"]);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_is_handed_only_task_types_among_its_capabilities()
    {
        var mine = NewType("cap.mine");
        var other = NewType("cap.other");
        await EnqueueAsync(mine);
        await EnqueueAsync(other);
        var worker = await Registry.RegisterAsync(Registration(capabilities: mine));
        await using var alive = Registry.KeepBeating(worker);

        var leased = await LeaseAsync(worker.Id, mine, other);
        Assert.Equal([mine], leased.Tasks.Select(t => t.Type));
        Assert.Equal("NO_CAPABLE_TASK_TYPES", await RefusalReasonAsync(worker.Id, other));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Failures_open_the_breaker_the_queue_refuses_it_then_it_half_opens_and_a_success_closes_it()
    {
        var type = NewType("breaker");
        var worker = await Registry.RegisterAsync(Registration(capabilities: type));
        await using var alive = Registry.KeepBeating(worker);
        for (var i = 0; i < 5; i++)
        {
            await EnqueueAsync(type);
        }

        // Threshold is 3: three failed runs, reported by the queue off its hot path.
        for (var i = 0; i < 3; i++)
        {
            var task = Assert.Single((await Queue.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = worker.Id, TaskTypes = { type } })).Tasks);
            await Queue.FailTaskAsync(new FailTaskRequest
            {
                TaskId = task.Id, FencingToken = task.FencingToken, Error = new ErrorDetail { Code = "BOOM", Retryable = false },
            });
        }
        Assert.True(await EventuallyAsync(async () =>
            (await Registry.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker.State == CircuitState.Open,
            TimeSpan.FromSeconds(10)));
        // The Redis mirror the queue reads follows the committed breaker a moment later.
        await using (var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString))
        {
            var key = Lifeline.ServiceDefaults.Workers.WorkerMirror.WorkerKey("default", worker.Id);
            Assert.True(await EventuallyAsync(async () => await redis.GetDatabase().HashGetAsync(key, "breaker") == "open", TimeSpan.FromSeconds(5)));
        }
        Assert.Equal("CIRCUIT_OPEN", await RefusalReasonAsync(worker.Id, type));
        var stats = (await Registry.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats;
        Assert.Equal(3, stats.Failed);
        Assert.Equal(3, stats.ConsecutiveFailures);

        // Open for 2 s, then half-open: work flows on trial.
        Assert.True(await EventuallyAsync(async () =>
            (await Registry.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker.State == CircuitState.HalfOpen,
            TimeSpan.FromSeconds(6)));
        var trial = (await Queue.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = worker.Id, TaskTypes = { type } })).Tasks.Single();
        await Queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = trial.Id, FencingToken = trial.FencingToken });
        Assert.True(await EventuallyAsync(async () =>
            (await Registry.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker.State == CircuitState.Closed,
            TimeSpan.FromSeconds(10)));
        Assert.NotEmpty((await LeaseAsync(worker.Id, type)).Tasks);
        Assert.Equal(4, (await Registry.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats.Total);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Each_lease_records_the_worker_and_its_wait_in_task_history()
    {
        var type = NewType("audit");
        var worker = await Registry.RegisterAsync(Registration(capabilities: type));
        await using var alive = Registry.KeepBeating(worker);
        await EnqueueAsync(type);
        var task = Assert.Single((await LeaseAsync(worker.Id, type)).Tasks);
        var history = await Queue.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id });
        var leased = Assert.Single(history.Events, e => e.EventType == "leased");
        Assert.Equal(worker.Id, leased.WorkerId);
        Assert.True(long.Parse(leased.Details["wait_ms"]) >= 0);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cancelling_a_leased_task_tells_the_worker_holding_it()
    {
        var type = NewType("cancel");
        var worker = await Registry.RegisterAsync(Registration(capabilities: type));
        await Registry.BeatAsync(worker);
        await EnqueueAsync(type);
        var task = Assert.Single((await LeaseAsync(worker.Id, type)).Tasks);

        await Queue.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id, Reason = "customer withdrew" });

        var beat = await Registry.BeatAsync(worker, task.Id);
        var command = Assert.Single(beat.Commands).CancelTask;
        Assert.Equal(task.Id, command.TaskId);
        Assert.Equal("customer withdrew", command.Reason);
        // Its outcome is refused: the task is cancelled.
        var refused = await RefusedAsync(() => Queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("INVALID_TASK_STATE", refused.ErrorInfo().Reason);
    }
}

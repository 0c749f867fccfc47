using System.Net;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.Maintenance;
using Lifeline.Queue.V1;
using Lifeline.ServiceDefaults.Workers;
using Lifeline.Testing;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A queue that checks workers against the registry's Redis mirror (written here by the tests, as the
/// registry would write it), and whose maintenance loop stays out of the way (it runs once at start):
/// expired leases and overdue attempts stay as they are until a test runs a maintenance pass itself.
/// </summary>
public sealed class RecoveryQueueEnvironment : QueueEnvironment
{
    public static readonly IReadOnlyDictionary<string, string?> Quiet = new Dictionary<string, string?>
    {
        ["Queue:WorkerEligibility"] = "Registry",
        ["Queue:MaintenanceInterval"] = "00:10:00",
    };

    private ConnectionMultiplexer? _redis;
    private ServiceHost? _second;
    private ServiceHost? _withoutRegistry;

    protected override IDictionary<string, string?>? Settings => new Dictionary<string, string?>(Quiet);

    /// <summary>The registry's Redis mirror, as the tests write it.</summary>
    public IDatabase Mirror => (_redis ??= ConnectionMultiplexer.Connect(RedisConnectionString)).GetDatabase();

    /// <summary>A second instance with the same settings, on the same database and Redis.</summary>
    public async Task<ServiceHost> SecondInstanceAsync() => _second ??= await StartInstanceAsync(new Dictionary<string, string?>(Quiet));

    /// <summary>An instance used without the registry (Queue:WorkerEligibility=None), on the same database.</summary>
    public async Task<ServiceHost> InstanceWithoutRegistryAsync() => _withoutRegistry ??= await StartInstanceAsync(
        new Dictionary<string, string?>(Quiet) { ["Queue:WorkerEligibility"] = "None" });

    /// <summary>A registered, heartbeating worker that may lease <paramref name="types"/> (what the registry mirrors).</summary>
    public async Task RegisterWorkerAsync(string workerId, string status = "online", params string[] types)
    {
        await Mirror.HashSetAsync(WorkerMirror.WorkerKey("default", workerId),
        [
            new("name", workerId), new("type", "standalone"), new("status", status), new("epoch", 1),
            new("capabilities", string.Join('\n', types)), new("deregistered", "0"), new("breaker", "closed"),
        ]);
        await Mirror.StringSetAsync(WorkerMirror.AliveKey("default", workerId), 1, TimeSpan.FromMinutes(10));
    }

    /// <summary>The worker's heartbeat lapsed: its alive key is gone (its entry still says online until the registry notices).</summary>
    public Task StopHeartbeatAsync(string workerId) => Mirror.KeyDeleteAsync(WorkerMirror.AliveKey("default", workerId));

    /// <summary>One maintenance pass of the first instance (timeouts, then expired leases).</summary>
    public Task<int> RunMaintenanceAsync() => Queue.App.Services.GetRequiredService<QueueMaintenance>().RunOnceAsync(CancellationToken.None);

    protected override async Task OnDisposingAsync()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
        await base.OnDisposingAsync();
    }
}

/// <summary>
/// RecoverTask: fenced on the current token, never taking a task from a worker that is alive under a
/// current lease, idempotent per recovered lease, race-safe against the holder's outcome, against
/// another recovery (also on another instance) and against the maintenance loop's lease expiry.
/// </summary>
public sealed class RecoverTaskTests(RecoveryQueueEnvironment env) : IClassFixture<RecoveryQueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Requeue_of_a_running_task_whose_lease_expired_resumes_from_the_checkpoint_and_fences_out_the_old_holder()
    {
        var type = NewType("recover.expired");
        var (oldWorker, newWorker) = (Worker(), Worker());
        await env.RegisterWorkerAsync(oldWorker, types: type);
        await env.RegisterWorkerAsync(newWorker, types: type);
        var spec = Spec(type, maxRetries: 3);
        spec.WorkflowId = "wf/order-42:v1";
        var task = await Client.EnqueueAsync(spec);
        var first = Assert.Single(await Client.LeaseAsync(oldWorker, type, leaseSeconds: 1));
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = first.FencingToken });
        await WaitUntilLeaseExpiredAsync(task.Id); // the worker still heartbeats: the expired lease alone allows recovery

        var checkpoint = Guid.NewGuid().ToString();
        var response = await Client.RecoverTaskAsync(Recover(task.Id, first.FencingToken, checkpoint: checkpoint));

        Assert.Equal(RecoverOutcome.Requeued, response.Outcome);
        Assert.Equal(TaskStatus.Pending, response.Task.Status);
        Assert.Equal(1, response.Task.RetryCount);
        Assert.Equal(1, response.Task.RecoveryCount);
        Assert.Equal(checkpoint, response.Task.ResumeCheckpointId);
        Assert.Equal("WORKER_LOST", response.Task.Error.Code);
        Assert.Null(response.Task.LeaseExpiresAt);
        Assert.Equal("pending", await env.StatusAsync(task.Id));
        Assert.Equal(checkpoint, (await Client.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.ResumeCheckpointId);

        // The next worker gets it with a larger token, the workflow and the checkpoint to resume from.
        var next = Assert.Single(await Client.LeaseAsync(newWorker, type));
        Assert.Equal(task.Id, next.Id);
        Assert.True(next.FencingToken > first.FencingToken);
        Assert.Equal(checkpoint, next.ResumeCheckpointId);
        Assert.Equal("wf/order-42:v1", next.WorkflowId);
        Assert.Equal(1, next.RecoveryCount);

        var stale = await RefusedAsync(() => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = first.FencingToken }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("STALE_FENCING_TOKEN", stale.ErrorInfo().Reason);
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = next.FencingToken });

        var history = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events;
        Assert.Equal(["enqueued", "leased", "started", "recovered", "leased", "completed"], history.Select(e => e.EventType));
        var recovered = history[3];
        Assert.Equal(TaskStatus.Running, recovered.FromStatus);
        Assert.Equal(TaskStatus.Pending, recovered.ToStatus);
        Assert.Equal(oldWorker, recovered.WorkerId);
        Assert.Equal(first.FencingToken, recovered.FencingToken);
        Assert.Equal("requeue", recovered.Details["action"]);
        Assert.Equal("requeued", recovered.Details["outcome"]);
        Assert.Equal("WORKER_LOST", recovered.Details["error_code"]);
        Assert.Equal(checkpoint, recovered.Details["resume_checkpoint_id"]);
        Assert.Equal("lease_expired", recovered.Details["basis"]);

        // Watchers can follow recoveries like any other event.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var watch = Client.WatchTasks(new WatchTasksRequest { TaskId = task.Id, EventTypes = { "recovered" }, AfterEventId = history[0].EventId },
            cancellationToken: cts.Token);
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(recovered.EventId, watch.ResponseStream.Current.Event.EventId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_current_lease_of_a_worker_that_still_heartbeats_is_not_recovered_and_nothing_changes()
    {
        foreach (var status in new[] { "online", "busy", "error", "draining" })
        {
            var type = NewType("recover.alive");
            var worker = Worker();
            await env.RegisterWorkerAsync(worker, types: type);
            var task = await Client.EnqueueAsync(Spec(type));
            var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
            await env.Mirror.HashSetAsync(WorkerMirror.WorkerKey("default", worker), "status", status);
            var before = await SnapshotAsync(task.Id);

            var refusal = await RefusedAsync(() => Client.RecoverTaskAsync(Recover(task.Id, leased.FencingToken)).ResponseAsync, StatusCode.FailedPrecondition);

            Assert.Equal("WORKER_STILL_ALIVE", refusal.ErrorInfo().Reason);
            Assert.Equal("lifeline", refusal.ErrorInfo().Domain);
            Assert.Equal(worker, refusal.ErrorInfo().Metadata["worker_id"]);
            Assert.Equal("alive", refusal.ErrorInfo().Metadata["liveness"]);
            var expires = DateTime.Parse(refusal.ErrorInfo().Metadata["lease_expires_at"], null, System.Globalization.DateTimeStyles.RoundtripKind);
            Assert.Equal(leased.LeaseExpiresAt.ToDateTime(), expires, TimeSpan.FromMilliseconds(1));
            Assert.Equal(before, await SnapshotAsync(task.Id));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_current_lease_of_a_worker_whose_heartbeat_lapsed_is_recovered()
    {
        var type = NewType("recover.dead");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));

        await env.StopHeartbeatAsync(worker); // dead, though its lease runs for minutes more
        var response = await Client.RecoverTaskAsync(Recover(task.Id, leased.FencingToken, countRetry: false));

        Assert.Equal(RecoverOutcome.Requeued, response.Outcome);
        Assert.Equal(0, response.Task.RetryCount); // count_retry false: no retry used
        Assert.Equal("", response.Task.ResumeCheckpointId);
        Assert.Equal("pending", await env.StatusAsync(task.Id));
        var recovered = Assert.Single((await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events, e => e.EventType == "recovered");
        Assert.Equal("worker_not_beating", recovered.Details["basis"]);
        Assert.Equal(TaskStatus.Assigned, recovered.FromStatus);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_the_mirror_knows_nothing_of_is_not_presumed_dead_under_a_current_lease()
    {
        var type = NewType("recover.unknown");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        // Redis lost the worker's entry and heartbeat (the registry rewrites them on its next beat).
        await env.Mirror.KeyDeleteAsync([WorkerMirror.WorkerKey("default", worker), WorkerMirror.AliveKey("default", worker)]);
        var before = await SnapshotAsync(task.Id);

        var refusal = await RefusedAsync(() => Client.RecoverTaskAsync(Recover(task.Id, leased.FencingToken)).ResponseAsync, StatusCode.FailedPrecondition);

        Assert.Equal("WORKER_STILL_ALIVE", refusal.ErrorInfo().Reason);
        Assert.Equal("unknown", refusal.ErrorInfo().Metadata["liveness"]);
        Assert.Equal(before, await SnapshotAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_stale_fencing_token_is_refused_and_changes_nothing()
    {
        var type = NewType("recover.stale");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        await env.StopHeartbeatAsync(worker);
        var before = await SnapshotAsync(task.Id);

        foreach (var staleToken in new[] { leased.FencingToken + 1, 999L })
        {
            var refusal = await RefusedAsync(() => Client.RecoverTaskAsync(Recover(task.Id, staleToken)).ResponseAsync, StatusCode.FailedPrecondition);
            Assert.Equal("STALE_FENCING_TOKEN", refusal.ErrorInfo().Reason);
            Assert.Equal(leased.FencingToken.ToString(System.Globalization.CultureInfo.InvariantCulture), refusal.ErrorInfo().Metadata["current_token"]);
        }
        Assert.Equal(before, await SnapshotAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Tasks_that_are_not_leased_or_timed_out_are_refused_with_INVALID_TASK_STATE()
    {
        var type = NewType("recover.state");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        var before = await SnapshotAsync(task.Id);

        var refusal = await RefusedAsync(() => Client.RecoverTaskAsync(Recover(task.Id, leased.FencingToken)).ResponseAsync, StatusCode.FailedPrecondition);

        Assert.Equal("INVALID_TASK_STATE", refusal.ErrorInfo().Reason);
        Assert.Equal("completed", refusal.ErrorInfo().Metadata["current_state"]);
        Assert.Equal(before, await SnapshotAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_timed_out_task_is_retried_and_when_out_of_retries_dead_lettered()
    {
        var type = NewType("recover.timeout");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var batch = new EnqueueTasksRequest
        {
            Tasks =
            {
                new BatchTask { Key = "a", Task = Spec(type, maxRetries: 1, timeoutSeconds: 1) },
                new BatchTask { Key = "b", Task = Spec(NewType("recover.dependent")), DependsOn = { new BatchDependency { TaskKey = "a" } } },
            },
        };
        var created = await Client.EnqueueTasksAsync(batch);
        var (task, dependent) = (created.Tasks[0], created.Tasks[1]);

        var first = await TimeOutAsync(worker, type, task.Id);
        // A timeout ends the task: its success dependents are cancelled then, and a retry does not revive them (like a redrive).
        Assert.Equal("cancelled", await env.StatusAsync(dependent.Id));
        var retried = await Client.RecoverTaskAsync(Recover(task.Id, first, code: "TASK_TIMEOUT"));
        Assert.Equal(RecoverOutcome.Requeued, retried.Outcome);
        Assert.Equal(1, retried.Task.RetryCount);
        Assert.Null(retried.Task.CompletedAt);
        Assert.Equal("cancelled", await env.StatusAsync(dependent.Id));

        var second = await TimeOutAsync(worker, type, task.Id);
        var exhausted = await Client.RecoverTaskAsync(Recover(task.Id, second, code: "TASK_TIMEOUT"));

        Assert.Equal(RecoverOutcome.DeadLettered, exhausted.Outcome);
        Assert.Equal(TaskStatus.DeadLettered, exhausted.Task.Status);
        Assert.Equal("MAX_RETRIES_EXCEEDED", exhausted.Task.Error.Code);
        Assert.Equal("TASK_TIMEOUT", exhausted.Task.Error.Details["last_error_code"]);
        Assert.Equal(1, exhausted.Task.RetryCount);
        Assert.Equal(2, exhausted.Task.RecoveryCount);
        Assert.NotNull(exhausted.Task.DeadLetteredAt);
        Assert.Equal("dead_lettered", await env.StatusAsync(task.Id));
        Assert.Contains(task.Id, (await Client.ListDeadLettersAsync(new ListDeadLettersRequest { Type = type })).Tasks.Select(t => t.Id));
        var events = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events.Where(e => e.EventType == "recovered").ToList();
        Assert.Equal([TaskStatus.Pending, TaskStatus.DeadLettered], events.Select(e => e.ToStatus));
        Assert.All(events, e => Assert.Equal(TaskStatus.Timeout, e.FromStatus));
        Assert.Equal("timed_out", events[1].Details["basis"]);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_requeue_without_retries_left_dead_letters_the_task_and_cancels_its_dependents_in_the_same_transaction()
    {
        var type = NewType("recover.exhausted");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var created = await Client.EnqueueTasksAsync(new EnqueueTasksRequest
        {
            Tasks =
            {
                new BatchTask { Key = "a", Task = Spec(type, maxRetries: 0) },
                new BatchTask { Key = "b", Task = Spec(NewType("recover.exhausted.dependent")), DependsOn = { new BatchDependency { TaskKey = "a" } } },
                new BatchTask { Key = "c", Task = Spec(NewType("recover.exhausted.grandchild")), DependsOn = { new BatchDependency { TaskKey = "b" } } },
                new BatchTask { Key = "d", Task = Spec(NewType("recover.exhausted.compensation")), DependsOn = { new BatchDependency { TaskKey = "a", Type = DependencyType.Failure } } },
            },
        });
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        await env.StopHeartbeatAsync(worker);

        var response = await Client.RecoverTaskAsync(Recover(created.Tasks[0].Id, leased.FencingToken));

        Assert.Equal(RecoverOutcome.DeadLettered, response.Outcome);
        Assert.Equal("MAX_RETRIES_EXCEEDED", response.Task.Error.Code);
        Assert.Equal("WORKER_LOST", response.Task.Error.Details["last_error_code"]);
        Assert.Equal("cancelled", await env.StatusAsync(created.Tasks[1].Id));
        Assert.Equal("cancelled", await env.StatusAsync(created.Tasks[2].Id));
        var compensation = (await Client.GetTaskAsync(new GetTaskRequest { TaskId = created.Tasks[3].Id })).Task;
        Assert.Equal(TaskStatus.Pending, compensation.Status);
        Assert.Equal(0, compensation.UnmetDependencies); // a failure dependency is met by the dead letter
        var recovered = Assert.Single((await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = created.Tasks[0].Id })).Events, e => e.EventType == "recovered");
        Assert.Equal(TaskStatus.DeadLettered, recovered.ToStatus);
        Assert.Equal("dead_lettered", recovered.Details["outcome"]);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Dead_letter_action_moves_the_task_to_the_dead_letters_with_the_reason_and_cancels_dependents()
    {
        var type = NewType("recover.dl");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var created = await Client.EnqueueTasksAsync(new EnqueueTasksRequest
        {
            Tasks =
            {
                new BatchTask { Key = "a", Task = Spec(type, maxRetries: 5) },
                new BatchTask { Key = "b", Task = Spec(NewType("recover.dl.dependent")), DependsOn = { new BatchDependency { TaskKey = "a" } } },
            },
        });
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        await env.StopHeartbeatAsync(worker);

        var response = await Client.RecoverTaskAsync(Recover(created.Tasks[0].Id, leased.FencingToken, RecoveryAction.DeadLetter, code: "POISON_TASK"));

        Assert.Equal(RecoverOutcome.DeadLettered, response.Outcome);
        Assert.Equal(TaskStatus.DeadLettered, response.Task.Status);
        Assert.Equal("POISON_TASK", response.Task.Error.Code);
        Assert.Equal(0, response.Task.RetryCount);
        Assert.Equal("cancelled", await env.StatusAsync(created.Tasks[1].Id));
        var cancelled = (await Client.GetTaskAsync(new GetTaskRequest { TaskId = created.Tasks[1].Id })).Task;
        Assert.Equal("DEPENDENCY_UNSATISFIED", cancelled.Error.Code);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Repeating_a_recovery_returns_ALREADY_RECOVERED_and_changes_nothing_also_after_the_next_lease()
    {
        var type = NewType("recover.repeat");
        var (worker, next) = (Worker(), Worker());
        await env.RegisterWorkerAsync(worker, types: type);
        await env.RegisterWorkerAsync(next, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        await env.StopHeartbeatAsync(worker);
        var request = Recover(task.Id, leased.FencingToken, checkpoint: Guid.NewGuid().ToString());
        await Client.RecoverTaskAsync(request);
        var afterFirst = await SnapshotAsync(task.Id);

        var again = await Client.RecoverTaskAsync(request);
        Assert.Equal(RecoverOutcome.AlreadyRecovered, again.Outcome);
        Assert.Equal(TaskStatus.Pending, again.Task.Status);
        Assert.Equal(afterFirst, await SnapshotAsync(task.Id));

        // A different action for the same lease is the same recovery: it was applied already.
        var other = await Client.RecoverTaskAsync(Recover(task.Id, leased.FencingToken, RecoveryAction.DeadLetter));
        Assert.Equal(RecoverOutcome.AlreadyRecovered, other.Outcome);
        Assert.Equal(afterFirst, await SnapshotAsync(task.Id));

        // Once another worker holds it, the repeat still changes nothing (the new lease is untouched).
        var nextLease = Assert.Single(await Client.LeaseAsync(next, type, leaseSeconds: 300));
        var beforeRepeat = await SnapshotAsync(task.Id);
        var late = await Client.RecoverTaskAsync(request);
        Assert.Equal(RecoverOutcome.AlreadyRecovered, late.Outcome);
        Assert.Equal(next, late.Task.AssignedWorkerId);
        Assert.Equal(nextLease.FencingToken, late.Task.FencingToken);
        Assert.Equal(beforeRepeat, await SnapshotAsync(task.Id));
        Assert.Equal(1, await EventCountAsync(task.Id, "recovered"));
        Assert.Equal(1, late.Task.RecoveryCount);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_task_is_not_found_and_stays_untouched()
    {
        var type = NewType("recover.tenant");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        await env.StopHeartbeatAsync(worker);
        var before = await SnapshotAsync(task.Id);

        var refusal = await RefusedAsync(() => env.Queue.Client("acme").RecoverTaskAsync(Recover(task.Id, leased.FencingToken)).ResponseAsync, StatusCode.NotFound);

        Assert.Equal("TASK_NOT_FOUND", refusal.ErrorInfo().Reason);
        Assert.Equal(before, await SnapshotAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Without_the_registry_only_an_expired_lease_allows_recovery()
    {
        var queue = (await env.InstanceWithoutRegistryAsync()).Client();
        var type = NewType("recover.noregistry");
        var task = await queue.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await queue.LeaseAsync("any-worker", type, leaseSeconds: 1));
        var before = await SnapshotAsync(task.Id);

        var refusal = await RefusedAsync(() => queue.RecoverTaskAsync(Recover(task.Id, leased.FencingToken)).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("WORKER_STILL_ALIVE", refusal.ErrorInfo().Reason);
        Assert.Equal("lease_current", refusal.ErrorInfo().Metadata["liveness"]);
        Assert.Equal(before, await SnapshotAsync(task.Id));

        await WaitUntilLeaseExpiredAsync(task.Id);
        Assert.Equal(RecoverOutcome.Requeued, (await queue.RecoverTaskAsync(Recover(task.Id, leased.FencingToken))).Outcome);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task With_redis_unreachable_a_current_lease_is_refused_with_UNAVAILABLE_and_nothing_changes()
    {
        var type = NewType("recover.noredis");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        var before = await SnapshotAsync(task.Id);
        await env.Redis.StopAsync();
        try
        {
            var refusal = await RefusedAsync(() => Client.RecoverTaskAsync(Recover(task.Id, leased.FencingToken)).ResponseAsync, StatusCode.Unavailable);
            Assert.Equal("REDIS_UNAVAILABLE", refusal.ErrorInfo().Reason);
            Assert.Equal(before, await SnapshotAsync(task.Id));
        }
        finally
        {
            await env.Redis.RestartAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recovery_racing_the_holders_completion_accepts_exactly_one_of_them()
    {
        for (var round = 0; round < 4; round++)
        {
            var type = NewType("recover.race.complete");
            var worker = Worker();
            await env.RegisterWorkerAsync(worker, types: type);
            var tasks = new List<V1.Task>();
            for (var i = 0; i < 8; i++)
            {
                tasks.Add(await Client.EnqueueAsync(Spec(type)));
            }
            var leased = await Client.LeaseAsync(worker, type, max: 8, leaseSeconds: 300);
            Assert.Equal(8, leased.Count);
            await env.StopHeartbeatAsync(worker); // the registry thinks it dead; it is still finishing its work

            var races = leased.Select(async (t, i) =>
            {
                Task<bool> Complete() => AcceptedAsync(() => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken, Result = "1" }).ResponseAsync);
                Task<bool> RecoverIt() => AcceptedAsync(() => Client.RecoverTaskAsync(Recover(t.Id, t.FencingToken)).ResponseAsync);
                if (i % 2 == 0)
                {
                    var r = await Task.WhenAll(Complete(), RecoverIt());
                    return (Task: t, Completed: r[0], Recovered: r[1]);
                }
                var s = await Task.WhenAll(RecoverIt(), Complete());
                return (Task: t, Completed: s[1], Recovered: s[0]);
            });
            foreach (var (t, completed, recovered) in await Task.WhenAll(races))
            {
                Assert.True(completed ^ recovered, $"task {t.Id}: completed={completed}, recovered={recovered}");
                Assert.Equal(completed ? "completed" : "pending", await env.StatusAsync(t.Id));
                Assert.Equal(completed ? 1 : 0, await EventCountAsync(t.Id, "completed"));
                Assert.Equal(recovered ? 1 : 0, await EventCountAsync(t.Id, "recovered"));
                Assert.Equal(recovered ? 1 : 0, await env.ScalarAsync<int>("SELECT retry_count FROM tasks WHERE id = @id", ("id", Guid.Parse(t.Id))));
            }
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recoveries_racing_on_two_instances_requeue_once_and_the_others_are_told_ALREADY_RECOVERED()
    {
        var clients = new[] { Client, (await env.SecondInstanceAsync()).Client() };
        var type = NewType("recover.race.twice");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        for (var i = 0; i < 10; i++)
        {
            await Client.EnqueueAsync(Spec(type, maxRetries: 3));
        }
        var leased = await Client.LeaseAsync(worker, type, max: 10, leaseSeconds: 300);
        Assert.Equal(10, leased.Count);
        await env.StopHeartbeatAsync(worker);

        var outcomes = await Task.WhenAll(leased.SelectMany(t => Enumerable.Range(0, 4).Select(async i =>
            (t.Id, (await clients[i % 2].RecoverTaskAsync(Recover(t.Id, t.FencingToken, checkpoint: Guid.NewGuid().ToString()))).Outcome))));

        foreach (var group in outcomes.GroupBy(o => o.Id))
        {
            Assert.Equal(1, group.Count(o => o.Outcome == RecoverOutcome.Requeued));
            Assert.Equal(3, group.Count(o => o.Outcome == RecoverOutcome.AlreadyRecovered));
            Assert.Equal(1, await env.ScalarAsync<int>("SELECT retry_count FROM tasks WHERE id = @id", ("id", Guid.Parse(group.Key))));
            Assert.Equal(1, await env.ScalarAsync<int>("SELECT recovery_count FROM tasks WHERE id = @id", ("id", Guid.Parse(group.Key))));
            Assert.Equal(1, await EventCountAsync(group.Key, "recovered"));
            Assert.Equal("pending", await env.StatusAsync(group.Key));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recovery_racing_the_maintenance_loops_lease_expiry_changes_each_task_once()
    {
        var type = NewType("recover.race.expiry");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        for (var i = 0; i < 10; i++)
        {
            await Client.EnqueueAsync(Spec(type, maxRetries: 3));
        }
        var leased = await Client.LeaseAsync(worker, type, max: 10, leaseSeconds: 1);
        Assert.Equal(10, leased.Count);
        foreach (var t in leased)
        {
            await WaitUntilLeaseExpiredAsync(t.Id);
        }

        var maintenance = Task.Run(env.RunMaintenanceAsync);
        var recoveries = leased.Select(t => AcceptedAsync(() => Client.RecoverTaskAsync(Recover(t.Id, t.FencingToken)).ResponseAsync)).ToList();
        await Task.WhenAll(recoveries.Cast<Task>().Append(maintenance));

        foreach (var (t, recovered) in leased.Zip(recoveries.Select(r => r.Result)))
        {
            var expired = await EventCountAsync(t.Id, "lease_expired");
            Assert.Equal(recovered ? 1 : 0, await EventCountAsync(t.Id, "recovered"));
            Assert.Equal(recovered ? 0 : 1, expired);
            Assert.Equal("pending", await env.StatusAsync(t.Id));
            Assert.Equal(1, await env.ScalarAsync<int>("SELECT retry_count FROM tasks WHERE id = @id", ("id", Guid.Parse(t.Id))));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Workflow_id_round_trips_and_filters_ListTasks()
    {
        var type = NewType("recover.workflow");
        var workflow = $"wf-{Guid.NewGuid():N}";
        var other = $"wf-{Guid.NewGuid():N}";
        var mine1 = Spec(type);
        mine1.WorkflowId = workflow;
        var first = await Client.EnqueueAsync(mine1);
        Assert.Equal(workflow, first.WorkflowId);
        var theirs = Spec(type);
        theirs.WorkflowId = other;
        await Client.EnqueueAsync(theirs);
        await Client.EnqueueAsync(Spec(type)); // none
        var mine2 = Spec(type);
        mine2.WorkflowId = workflow;
        var batch = await Client.EnqueueTasksAsync(new EnqueueTasksRequest { Tasks = { new BatchTask { Task = mine2 } } });
        Assert.Equal(workflow, batch.Tasks[0].WorkflowId);

        Assert.Equal(workflow, (await Client.GetTaskAsync(new GetTaskRequest { TaskId = first.Id })).Task.WorkflowId);
        Assert.Equal(workflow, await env.ScalarAsync<string>("SELECT workflow_id FROM tasks WHERE id = @id", ("id", Guid.Parse(first.Id))));
        var listed = (await Client.ListTasksAsync(new ListTasksRequest { WorkflowId = workflow })).Tasks;
        Assert.Equal([batch.Tasks[0].Id, first.Id], listed.Select(t => t.Id)); // newest first
        var all = (await Client.ListTasksAsync(new ListTasksRequest { Type = type, PageSize = 100 })).Tasks;
        Assert.Equal(new[] { "", other, workflow, workflow }.Order(StringComparer.Ordinal), all.Select(t => t.WorkflowId).Order(StringComparer.Ordinal));
        Assert.Empty((await Client.ListTasksAsync(new ListTasksRequest { WorkflowId = workflow, Status = TaskStatus.Completed })).Tasks);
        Assert.Empty((await env.Queue.Client("acme").ListTasksAsync(new ListTasksRequest { WorkflowId = workflow })).Tasks);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task RecoverTask_is_reachable_over_rest()
    {
        var type = NewType("recover.rest");
        var worker = Worker();
        await env.RegisterWorkerAsync(worker, types: type);
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync(worker, type, leaseSeconds: 300));
        await env.StopHeartbeatAsync(worker);
        using var http = env.Queue.Rest();
        var body = JsonSerializer.Serialize(new
        {
            fencingToken = leased.FencingToken.ToString(System.Globalization.CultureInfo.InvariantCulture),
            action = "RECOVERY_ACTION_REQUEUE",
            reason = new { code = "WORKER_LOST" },
            countRetry = true,
        });
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync($"/api/v1/tasks/{task.Id}:recover", content);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("RECOVER_OUTCOME_REQUEUED", json.RootElement.GetProperty("outcome").GetString());
        Assert.Equal("TASK_STATUS_PENDING", json.RootElement.GetProperty("task").GetProperty("status").GetString());
    }

    // ---- helpers ----

    private static string Worker() => $"worker-{Guid.NewGuid():N}";

    private static RecoverTaskRequest Recover(string taskId, long token, RecoveryAction action = RecoveryAction.Requeue, string code = "WORKER_LOST",
        string checkpoint = "", bool countRetry = true) => new()
    {
        TaskId = taskId,
        FencingToken = token,
        Action = action,
        Reason = new ErrorDetail { Code = code, Message = "the worker stopped heartbeating", Retryable = true, Severity = Severity.High },
        ResumeCheckpointId = checkpoint,
        CountRetry = countRetry,
    };

    /// <summary>True when the call was accepted, false when refused with FAILED_PRECONDITION (anything else fails the test).</summary>
    private static async Task<bool> AcceptedAsync<T>(Func<Task<T>> call)
    {
        try
        {
            await call();
            return true;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition)
        {
            Assert.Contains(ex.GetRpcStatus()!.ErrorInfo().Reason, new[] { "INVALID_TASK_STATE", "STALE_FENCING_TOKEN" });
            return false;
        }
    }

    /// <summary>Leases the task started, lets its attempt run past its 1 s timeout and runs maintenance; returns the attempt's token.</summary>
    private async Task<long> TimeOutAsync(string worker, string type, string taskId)
    {
        var leased = Assert.Single((await Client.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = worker, TaskTypes = { type }, Start = true })).Tasks);
        Assert.Equal(taskId, leased.Id);
        await WaitUntilAsync("SELECT deadline_at < now() FROM tasks WHERE id = @id", taskId);
        await env.RunMaintenanceAsync();
        Assert.Equal("timeout", await env.StatusAsync(taskId));
        return leased.FencingToken;
    }

    private Task WaitUntilLeaseExpiredAsync(string taskId) => WaitUntilAsync("SELECT lease_expires_at < now() FROM tasks WHERE id = @id", taskId);

    private async Task WaitUntilAsync(string sql, string taskId)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (!await env.ScalarAsync<bool>(sql, ("id", Guid.Parse(taskId))))
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for: {sql}");
            await Task.Delay(100);
        }
    }

    /// <summary>The task's row and its history count, to prove a refusal changed nothing.</summary>
    private async Task<(string Row, long Events)> SnapshotAsync(string taskId) => (
        await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(taskId))),
        await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(taskId))));

    private Task<long> EventCountAsync(string taskId, string eventType) =>
        env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = @type", ("id", Guid.Parse(taskId)), ("type", eventType));
}

using System.Diagnostics;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.Tests;

/// <summary>In-flight recovery against the real registry, queue and checkpoint services.</summary>
public sealed class InFlightRecoveryTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Tasks_of_a_lost_worker_are_requeued_at_once_and_resume_from_the_workflows_latest_valid_checkpoint()
    {
        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient();
        var workflow = $"wf-{Guid.NewGuid():N}";
        var good = (await env.CheckpointClient().CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "half way", Type = CheckpointType.Auto,
            State = new CheckpointState { Context = """{"done":50}""" },
        })).Metadata;
        var task = await queue.EnqueueAsync(type, workflow);
        var doomed = await LiveWorker.StartAsync(env, type);
        var leased = await queue.LeaseOneAsync(doomed.Id, type, start: true, leaseSeconds: 300);
        Assert.Equal(task.Id, leased.Id);

        var crashedAt = Stopwatch.StartNew();
        await doomed.CrashAsync();
        await using var rescuer = await LiveWorker.StartAsync(env, type);
        var resumed = await queue.LeaseOneAsync(rescuer.Id, type, start: true);
        var elapsed = crashedAt.Elapsed;

        Assert.Equal(task.Id, resumed.Id);
        Assert.Equal(good.Id, resumed.ResumeCheckpointId);
        Assert.True(resumed.FencingToken > leased.FencingToken);
        // TTL 3 s + lost detection + the lost event; the 300 s lease had not expired.
        Assert.True(elapsed < TimeSpan.FromSeconds(8), $"re-leased after {elapsed.TotalSeconds:0.0} s");

        var refused = await Assert.ThrowsAsync<RpcException>(() => queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken }).ResponseAsync);
        Assert.Equal("STALE_FENCING_TOKEN", refused.Reason());

        var action = Assert.Single(await env.ActionsAsync(task.Id, 1));
        Assert.Equal(ActionType.Resume, action.Action);
        // The lost event (fast path) or a scan that saw the worker offline first: either way, because the worker died.
        Assert.Contains(action.Trigger, new[] { RecoveryTrigger.WorkerLost, RecoveryTrigger.WorkerGone });
        Assert.Equal(good.Id, action.CheckpointId);
        Assert.Equal(doomed.Id, action.WorkerId);
        Assert.Equal(leased.FencingToken, action.FencingToken);
        Assert.Equal("TASK_STATUS_RUNNING", action.PreviousStatus);
        Assert.Equal("TASK_STATUS_PENDING", action.NewStatus);
        Assert.True(action.Succeeded);
        Assert.True(action.TimeToRecovery.ToTimeSpan() >= TimeSpan.Zero);
        await queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = resumed.FencingToken });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_corrupt_latest_checkpoint_is_skipped_and_the_task_resumes_from_the_previous_valid_one()
    {
        var type = InFlightTestSupport.NewType();
        var checkpoints = env.CheckpointClient();
        var workflow = $"wf-{Guid.NewGuid():N}";
        var first = (await checkpoints.CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "one", Type = CheckpointType.Auto, State = new CheckpointState { Context = """{"done":10}""" },
        })).Metadata;
        var second = (await checkpoints.CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "two", Type = CheckpointType.Auto, State = new CheckpointState { Context = """{"done":20}""" },
        })).Metadata;
        await env.ScalarOnAsync<int>(env.CheckpointDatabase,
            "UPDATE checkpoints SET payload = set_byte(payload, 8, get_byte(payload, 8) # 255) WHERE id = @id RETURNING 1", ("id", Guid.Parse(second.Id)));

        var queue = env.QueueClient();
        var task = await queue.EnqueueAsync(type, workflow);
        var doomed = await LiveWorker.StartAsync(env, type);
        var leased = await queue.LeaseOneAsync(doomed.Id, type, leaseSeconds: 300);
        await doomed.CrashAsync();
        await using var rescuer = await LiveWorker.StartAsync(env, type);
        var resumed = await queue.LeaseOneAsync(rescuer.Id, type);

        Assert.Equal(task.Id, resumed.Id);
        Assert.True(resumed.FencingToken > leased.FencingToken);
        Assert.Equal(first.Id, resumed.ResumeCheckpointId);
        var action = Assert.Single(await env.ActionsAsync(task.Id, 1));
        Assert.Contains("corrupt", action.Reason, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_scan_leaves_a_live_holder_alone_and_repeating_it_changes_nothing()
    {
        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient();
        var task = await queue.EnqueueAsync(type);
        await using var worker = await LiveWorker.StartAsync(env, type);
        var leased = await queue.LeaseOneAsync(worker.Id, type, leaseSeconds: 300);

        var recovery = env.RecoveryClient();
        var first = await recovery.RunRecoveryScanAsync(new RunRecoveryScanRequest());
        var second = await recovery.RunRecoveryScanAsync(new RunRecoveryScanRequest());

        Assert.DoesNotContain(first.Actions.Concat(second.Actions), a => a.TaskId == task.Id);
        Assert.True(first.SkippedAlive >= 1);
        var now = (await queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task;
        Assert.Equal(TaskStatus.Running, now.Status);
        Assert.Equal(leased.FencingToken, now.FencingToken);
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM recovery_actions WHERE task_id = @t", ("t", Guid.Parse(task.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Scans_racing_the_queues_lease_expiry_leave_an_expired_lease_of_a_live_holder_to_the_queue()
    {
        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient();
        var tasks = new List<Queue.V1.Task>();
        for (var i = 0; i < 5; i++)
        {
            tasks.Add(await queue.EnqueueAsync(type, maxRetries: 3));
        }
        await using var worker = await LiveWorker.StartAsync(env, type);
        var leased = new List<Queue.V1.Task>();
        foreach (var _ in tasks)
        {
            leased.Add(await queue.LeaseOneAsync(worker.Id, type, leaseSeconds: 1));
        }

        // Scans run back to back across the moment the leases expire, racing the queue's maintenance (every 200 ms).
        var recovery = env.RecoveryClient();
        var scans = 0;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        while (DateTime.UtcNow < until)
        {
            await recovery.RunRecoveryScanAsync(new RunRecoveryScanRequest());
            scans++;
        }
        Assert.True(scans >= 2, $"only {scans} scan(s) ran");

        foreach (var task in leased)
        {
            // The expiry is the queue's (TaskLifecycle.LeaseExpiry): requeued once, counting the attempt, never by recovery.
            var requeued = await InFlightTestSupport.EventuallyAsync(async () =>
            {
                var t = (await queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task;
                return t.Status == TaskStatus.Pending ? t : null;
            }, TimeSpan.FromSeconds(10), $"task {task.Id} to be requeued");
            Assert.Equal(1, requeued.RetryCount);
            Assert.Equal(0, requeued.RecoveryCount);
            var events = (await queue.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events.Select(e => e.EventType).ToList();
            Assert.Equal(1, events.Count(e => e == "lease_expired"));
            Assert.DoesNotContain("recovered", events);
            Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM recovery_actions WHERE task_id = @t", ("t", Guid.Parse(task.Id))));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_timed_out_task_is_retried_and_one_out_of_retries_is_dead_lettered_with_max_retries_exceeded()
    {
        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient();
        var retried = await queue.EnqueueAsync(type, maxRetries: 1, timeoutSeconds: 1);
        await using var worker = await LiveWorker.StartAsync(env, type);

        var first = await queue.LeaseOneAsync(worker.Id, type);
        var again = await queue.LeaseOneAsync(worker.Id, type); // after the timeout and the recovery's retry
        Assert.Equal(retried.Id, again.Id);
        Assert.Equal(1, again.RetryCount);
        Assert.True(again.FencingToken > first.FencingToken);

        var dead = await InFlightTestSupport.EventuallyAsync(async () =>
        {
            var t = (await queue.GetTaskAsync(new GetTaskRequest { TaskId = retried.Id })).Task;
            return t.Status == TaskStatus.DeadLettered ? t : null;
        }, TimeSpan.FromSeconds(20), "the second timeout to be dead-lettered");
        Assert.Equal("MAX_RETRIES_EXCEEDED", dead.Error.Code);

        var actions = await env.ActionsAsync(retried.Id, 2);
        Assert.Equal([ActionType.DeadLetter, ActionType.Retry], actions.Select(a => a.Action));
        Assert.All(actions, a => Assert.Equal(RecoveryTrigger.TimedOut, a.Trigger));
        Assert.Equal(2, actions.Select(a => a.FencingToken).Distinct().Count());

        var stats = await env.RecoveryClient().GetRecoveryStatsAsync(new GetRecoveryStatsRequest());
        Assert.True(stats.RecoveredToday >= 1);
        Assert.True(stats.FailedToday >= 1);
        Assert.InRange(stats.SuccessRate, 0, 1);
        Assert.NotNull(stats.LastScanAt);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Bad_input_to_list_actions_is_refused_with_field_violations()
    {
        var recovery = env.RecoveryClient();
        var e = await Assert.ThrowsAsync<RpcException>(() => recovery.ListRecoveryActionsAsync(new ListRecoveryActionsRequest
        {
            TaskId = "not-a-uuid", WorkerId = "nope", PageSize = 5000, PageToken = "garbage", Action = (ActionType)42,
        }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal(["task_id", "worker_id", "action", "page_size", "page_token"], e.BadRequest()!.FieldViolations.Select(v => v.Field));
    }
}

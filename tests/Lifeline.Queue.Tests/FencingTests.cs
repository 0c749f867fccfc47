using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

public sealed class FencingTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Lease_start_complete_records_every_step_in_history()
    {
        var type = NewType("fence.happy");
        var task = await Client.EnqueueAsync(Spec(type, """{"n":1}"""));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        Assert.Equal(1, leased.FencingToken);
        Assert.Equal(V1.TaskStatus.Assigned, leased.Status);

        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = 1 });
        var done = (await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = 1, Result = """{"ok":true}""" })).Task;

        Assert.Equal(V1.TaskStatus.Completed, done.Status);
        Assert.Equal("completed", await env.StatusAsync(task.Id));
        var history = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events.Select(e => e.EventType);
        Assert.Equal(["enqueued", "leased", "started", "completed"], history);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Complete_with_stale_fencing_token_is_refused_and_changes_nothing()
    {
        var type = NewType("fence.stale");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        var before = await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(task.Id)));
        var historyBefore = await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(task.Id)));

        foreach (var staleToken in new[] { leased.FencingToken + 1, 999L })
        {
            var status = await RefusedAsync(() => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = staleToken }).ResponseAsync,
                StatusCode.FailedPrecondition);
            Assert.Equal("STALE_FENCING_TOKEN", status.ErrorInfo().Reason);
            Assert.Equal("lifeline", status.ErrorInfo().Domain);
        }

        Assert.Equal(before, await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(task.Id))));
        Assert.Equal(historyBefore, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(task.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Expired_lease_is_released_with_a_higher_token_and_the_old_holder_is_refused_everything()
    {
        var type = NewType("fence.expiry");
        var task = await Client.EnqueueAsync(Spec(type, maxRetries: 3));
        var first = Assert.Single(await Client.LeaseAsync("slow-worker", type, leaseSeconds: 1));
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = first.FencingToken });

        // The visibility timeout: no other service is running, the queue's own maintenance frees the task.
        var second = Assert.Single(await Client.LeaseAsync("fast-worker", type, leaseSeconds: 30, waitSeconds: 10));
        Assert.Equal(task.Id, second.Id);
        Assert.True(second.FencingToken > first.FencingToken);
        Assert.Equal(1, second.RetryCount); // the expired attempt counts against max_retries

        var old = first.FencingToken;
        await AssertStale(() => Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = old }).ResponseAsync);
        await AssertStale(() => Client.ReportProgressAsync(new ReportProgressRequest { TaskId = task.Id, FencingToken = old, Percent = 50 }).ResponseAsync);
        await AssertStale(() => Client.ExtendLeaseAsync(new ExtendLeaseRequest { TaskId = task.Id, FencingToken = old }).ResponseAsync);
        await AssertStale(() => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = old }).ResponseAsync);
        await AssertStale(() => Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = task.Id, FencingToken = old, Error = new Common.V1.ErrorDetail { Code = "X", Retryable = true },
        }).ResponseAsync);
        await AssertStale(() => Client.ReleaseTaskAsync(new ReleaseTaskRequest { TaskId = task.Id, FencingToken = old }).ResponseAsync);

        var row = await Client.GetTaskAsync(new GetTaskRequest { TaskId = task.Id });
        Assert.Equal("fast-worker", row.Task.AssignedWorkerId);
        Assert.Equal(V1.TaskStatus.Assigned, row.Task.Status);

        // The current holder still completes it, exactly once.
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = second.FencingToken });
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'completed'", ("id", Guid.Parse(task.Id))));
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'lease_expired'", ("id", Guid.Parse(task.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Repeating_a_completion_with_the_same_token_is_harmless()
    {
        var type = NewType("fence.repeat");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        var request = new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = "42" };
        await Client.CompleteTaskAsync(request);
        var again = await Client.CompleteTaskAsync(request);

        Assert.Equal(V1.TaskStatus.Completed, again.Task.Status);
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'completed'", ("id", Guid.Parse(task.Id))));
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData(true, 3)]   // retry scheduled
    [InlineData(true, 0)]   // dead-lettered: out of retries
    [InlineData(false, 3)]  // failed for good
    public async Task Repeating_a_failure_with_the_same_token_gives_the_same_answer_and_changes_nothing(bool retryable, int maxRetries)
    {
        // A worker whose FailTask answer was lost sends it again: the repeat must neither be refused nor count twice.
        var type = NewType("fence.fail-repeat");
        var task = await Client.EnqueueAsync(Spec(type, maxRetries: maxRetries));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        var request = new FailTaskRequest
        {
            TaskId = task.Id, FencingToken = leased.FencingToken,
            Error = new Common.V1.ErrorDetail { Code = "BOOM", Message = "boom", Retryable = retryable },
            RetryAfter = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromMinutes(10)),
        };
        var first = await Client.FailTaskAsync(request);
        var snapshot = await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(task.Id)));

        // The repeats race each other, as retries after a lost answer can.
        var repeats = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Client.FailTaskAsync(request).ResponseAsync));

        Assert.All(repeats, r => Assert.Equal(first.WillRetry, r.WillRetry));
        Assert.All(repeats, r => Assert.Equal(first.Task.Status, r.Task.Status));
        Assert.Equal(snapshot, await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(task.Id))));
        Assert.Equal(1, await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_history WHERE task_id = @id AND event_type IN ('failed', 'retry_scheduled', 'dead_lettered')", ("id", Guid.Parse(task.Id))));

        if (first.WillRetry)
        {
            // Once the next attempt holds the task, the old token's failure is stale again.
            await env.ScalarAsync<int>("UPDATE tasks SET not_before = now() WHERE id = @id RETURNING 1", ("id", Guid.Parse(task.Id)));
            Assert.Single(await Client.LeaseAsync("w2", type));
            var stale = await RefusedAsync(() => Client.FailTaskAsync(request).ResponseAsync, StatusCode.FailedPrecondition);
            Assert.Equal("STALE_FENCING_TOKEN", stale.ErrorInfo().Reason);
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_completions_of_one_lease_and_a_cancel_accept_exactly_one_outcome()
    {
        var type = NewType("fence.race");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        var attempts = Enumerable.Range(0, 8).Select(async i =>
        {
            try
            {
                if (i == 0)
                {
                    await Client.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id, Reason = "operator" });
                }
                else
                {
                    await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = $"{i}" });
                }
                return true;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition)
            {
                return false;
            }
        });
        await Task.WhenAll(attempts);

        var ended = await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_history WHERE task_id = @id AND event_type IN ('completed','cancelled')", ("id", Guid.Parse(task.Id)));
        Assert.Equal(1, ended);
        Assert.Contains(await env.StatusAsync(task.Id), new[] { "completed", "cancelled" });
    }

    private static async Task AssertStale<T>(Func<Task<T>> call)
    {
        var status = await RefusedAsync(call, StatusCode.FailedPrecondition);
        Assert.Equal("STALE_FENCING_TOKEN", status.ErrorInfo().Reason);
    }
}

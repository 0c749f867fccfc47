using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>RecoverTask with RECOVERY_ACTION_TIMEOUT: a running attempt past its own timeout ends as the maintenance would end it.</summary>
public sealed class RecoverTaskTimeoutTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static RecoverTaskRequest Timeout(V1.Task task, long? token = null) => new()
    {
        TaskId = task.Id,
        FencingToken = token ?? task.FencingToken,
        Action = RecoveryAction.Timeout,
        Reason = new ErrorDetail { Code = "TASK_TIMEOUT", Message = "past its timeout" },
    };

    private async Task<V1.Task> StartedAsync(int timeoutSeconds = 60)
    {
        var type = NewType("timeout");
        await Client.EnqueueAsync(Spec(type, timeoutSeconds: timeoutSeconds));
        var leased = Assert.Single(await Client.LeaseAsync("w", type, leaseSeconds: 600, waitSeconds: 2));
        return (await Client.StartTaskAsync(new StartTaskRequest { TaskId = leased.Id, FencingToken = leased.FencingToken })).Task;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_running_task_past_its_own_timeout_ends_as_timeout_once()
    {
        var task = await StartedAsync();
        // Started an hour ago by its own clock; the deadline column the maintenance reads is left as it was.
        await env.ScalarAsync<int>("UPDATE tasks SET started_at = started_at - interval '1 hour' WHERE id = @id RETURNING 1", ("id", Guid.Parse(task.Id)));

        var response = await Client.RecoverTaskAsync(Timeout(task));

        Assert.Equal(RecoverOutcome.TimedOut, response.Outcome);
        Assert.Equal(V1.TaskStatus.Timeout, response.Task.Status);
        Assert.Equal("TASK_TIMEOUT", response.Task.Error.Code);
        Assert.Equal("timeout", await env.StatusAsync(task.Id));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'timed_out'",
            ("id", Guid.Parse(task.Id))));

        var again = await Client.RecoverTaskAsync(Timeout(task));
        Assert.Equal(RecoverOutcome.AlreadyRecovered, again.Outcome);
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'timed_out'",
            ("id", Guid.Parse(task.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_task_not_past_its_timeout_or_under_another_token_or_not_running_is_refused_and_unchanged()
    {
        var task = await StartedAsync();
        var early = await RefusedAsync(() => Client.RecoverTaskAsync(Timeout(task)).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("NOT_TIMED_OUT", early.ErrorInfo().Reason);
        var stale = await RefusedAsync(() => Client.RecoverTaskAsync(Timeout(task, task.FencingToken + 1)).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("STALE_FENCING_TOKEN", stale.ErrorInfo().Reason);
        Assert.Equal("running", await env.StatusAsync(task.Id));

        var done = await StartedAsync();
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = done.Id, FencingToken = done.FencingToken });
        var state = await RefusedAsync(() => Client.RecoverTaskAsync(Timeout(done)).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("INVALID_TASK_STATE", state.ErrorInfo().Reason);
        Assert.Equal("completed", await env.StatusAsync(done.Id));
    }
}

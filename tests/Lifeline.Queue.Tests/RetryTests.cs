using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

public sealed class RetryTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static RetryPolicy Fixed(double seconds) => new()
    {
        Backoff = BackoffStrategy.Fixed,
        InitialInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(seconds)),
        MaximumInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(seconds)),
        Jitter = 0,
    };

    private async Task<FailTaskResponse> FailAsync(V1.Task leased, bool retryable, string code = "UPSTREAM_DOWN") =>
        await Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = leased.Id,
            FencingToken = leased.FencingToken,
            Error = new ErrorDetail { Code = code, Message = "upstream said 503", Retryable = retryable, Severity = Severity.High },
        });

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Retryable_failure_returns_after_the_backoff_and_not_before()
    {
        var type = NewType("retry.backoff");
        var exponential = new RetryPolicy
        {
            Backoff = BackoffStrategy.Exponential,
            InitialInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)),
            MaximumInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(10)),
            Jitter = 0,
        };
        var task = await Client.EnqueueAsync(Spec(type, maxRetries: 5, retry: exponential));

        // First retry waits 1 s, second 2 s (exponential, no jitter).
        foreach (var expected in new[] { 1.0, 2.0 })
        {
            var leased = Assert.Single(await Client.LeaseAsync("w", type, waitSeconds: 10));
            var failedAt = DateTime.UtcNow;
            var failed = await FailAsync(leased, retryable: true);
            Assert.True(failed.WillRetry);
            Assert.Equal(V1.TaskStatus.Pending, failed.Task.Status);
            var delay = failed.Task.NotBefore.ToDateTime() - failedAt;
            Assert.InRange(delay.TotalSeconds, expected - 0.3, expected + 0.3);

            Assert.Empty(await Client.LeaseAsync("w", type)); // not before the backoff
            var again = Assert.Single(await Client.LeaseAsync("w", type, waitSeconds: 10));
            Assert.True(DateTime.UtcNow - failedAt >= TimeSpan.FromSeconds(expected - 0.05));
            await Client.ReleaseTaskAsync(new ReleaseTaskRequest { TaskId = again.Id, FencingToken = again.FencingToken });
        }
        Assert.Equal(2, await env.ScalarAsync<int>("SELECT retry_count FROM tasks WHERE id = @id", ("id", Guid.Parse(task.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Non_retryable_failure_ends_the_task_as_failed()
    {
        var type = NewType("retry.fatal");
        var task = await Client.EnqueueAsync(Spec(type, maxRetries: 5));
        var leased = Assert.Single(await Client.LeaseAsync("w", type));
        var failed = await FailAsync(leased, retryable: false, code: "BAD_PAYLOAD");

        Assert.False(failed.WillRetry);
        Assert.Equal(V1.TaskStatus.Failed, failed.Task.Status);
        Assert.Equal("BAD_PAYLOAD", failed.Task.Error.Code);
        Assert.Equal("failed", await env.StatusAsync(task.Id));
        Assert.Empty(await Client.LeaseAsync("w", type));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Exhausted_retries_dead_letter_the_task_and_redrive_brings_it_back()
    {
        var type = NewType("retry.dead");
        var task = await Client.EnqueueAsync(Spec(type, maxRetries: 1, retry: Fixed(0)));
        var first = Assert.Single(await Client.LeaseAsync("w", type));
        Assert.True((await FailAsync(first, retryable: true)).WillRetry);
        var second = Assert.Single(await Client.LeaseAsync("w", type, waitSeconds: 5));
        var dead = await FailAsync(second, retryable: true);

        Assert.False(dead.WillRetry);
        Assert.Equal(V1.TaskStatus.DeadLettered, dead.Task.Status);
        Assert.Equal("MAX_RETRIES_EXCEEDED", dead.Task.Error.Code);
        Assert.Equal("UPSTREAM_DOWN", dead.Task.Error.Details["last_error_code"]);
        var letters = await Client.ListDeadLettersAsync(new ListDeadLettersRequest { Type = type });
        Assert.Equal(task.Id, Assert.Single(letters.Tasks).Id);

        var redriven = await Client.RedriveDeadLettersAsync(new RedriveDeadLettersRequest { TaskIds = { task.Id } });
        Assert.Equal([task.Id], redriven.TaskIds);
        Assert.Equal("pending", await env.StatusAsync(task.Id));
        Assert.Equal(0, await env.ScalarAsync<int>("SELECT retry_count FROM tasks WHERE id = @id", ("id", Guid.Parse(task.Id))));
        Assert.Empty((await Client.ListDeadLettersAsync(new ListDeadLettersRequest { Type = type })).Tasks);

        var third = Assert.Single(await Client.LeaseAsync("w", type, waitSeconds: 5));
        Assert.True(third.FencingToken > second.FencingToken);
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = third.FencingToken });
        Assert.Equal("completed", await env.StatusAsync(task.Id));

        // Redriving a task that is no longer a dead letter is refused and changes nothing.
        var refused = await RefusedAsync(() => Client.RedriveDeadLettersAsync(new RedriveDeadLettersRequest { TaskIds = { task.Id } }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("INVALID_TASK_STATE", refused.ErrorInfo().Reason);
        Assert.Equal("completed", await env.StatusAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Lease_expiry_beyond_max_retries_dead_letters_with_max_retries_exceeded()
    {
        var type = NewType("retry.expiry");
        var task = await Client.EnqueueAsync(Spec(type, maxRetries: 0));
        Assert.Single(await Client.LeaseAsync("crashing-worker", type, leaseSeconds: 1));

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (await env.StatusAsync(task.Id) != "dead_lettered" && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }
        var row = (await Client.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task;
        Assert.Equal(V1.TaskStatus.DeadLettered, row.Status);
        Assert.Equal("MAX_RETRIES_EXCEEDED", row.Error.Code);
        Assert.Empty(await Client.LeaseAsync("w", type));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_task_running_past_its_timeout_ends_as_timeout()
    {
        var type = NewType("retry.timeout");
        var task = await Client.EnqueueAsync(Spec(type, timeoutSeconds: 1));
        var leased = Assert.Single(await Client.LeaseAsync("w", type, leaseSeconds: 60));
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (await env.StatusAsync(task.Id) != "timeout" && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }
        Assert.Equal("timeout", await env.StatusAsync(task.Id));
        var late = await RefusedAsync(() => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("INVALID_TASK_STATE", late.ErrorInfo().Reason);
        Assert.Contains("timeout", late.Message);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Progress_extends_the_lease_so_a_long_task_is_not_taken_away()
    {
        var type = NewType("retry.progress");
        var task = await Client.EnqueueAsync(Spec(type));
        // A 3 s lease, progress every second for 5 s: the task outlives its first lease only because progress
        // extends it (each gap leaves 2 s of slack for a loaded machine).
        var leased = Assert.Single(await Client.LeaseAsync("w", type, leaseSeconds: 3));
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        for (var i = 1; i <= 4; i++)
        {
            await Task.Delay(1250);
            await Client.ReportProgressAsync(new ReportProgressRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Percent = i * 20, Message = $"step {i}" });
        }
        var row = (await Client.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task;
        Assert.Equal(V1.TaskStatus.Running, row.Status);
        Assert.Equal(leased.FencingToken, row.FencingToken);
        Assert.Equal(80, row.ProgressPercent);
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
    }
}

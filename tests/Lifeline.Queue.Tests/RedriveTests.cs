using Google.Protobuf.WellKnownTypes;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// Redriving dead letters — whichever way they died — returns them to a proper pending state that a worker can
/// lease, start and complete, and records it in the history.
/// </summary>
public sealed class RedriveTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    private static RetryPolicy NoDelay => new()
    {
        Backoff = BackoffStrategy.Fixed,
        InitialInterval = new Duration(),
        MaximumInterval = new Duration(),
        Jitter = 0,
    };

    [Fact(Timeout = 120_000)]
    public async Task A_started_dead_letter_is_redriven_and_can_then_be_leased_started_and_completed()
    {
        var type = NewType("redrive.started");
        var task = await EnqueueAsync(type);
        // The normal worker path: lease, start, a retryable failure with no retries left.
        var leased = await LeaseOneAsync(type, start: false);
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken }, deadline: Deadline);
        var dead = await FailAsync(leased);
        Assert.Equal(V1.TaskStatus.DeadLettered, dead.Task.Status);
        Assert.NotNull(await env.ScalarAsync<DateTime?>("SELECT started_at FROM tasks WHERE id = @id", ("id", Guid.Parse(task.Id))));

        await RedriveAndCompleteAsync(task.Id, type, leased.FencingToken);

        Assert.Equal(
            ["enqueued", "leased", "started", "dead_lettered", "redriven", "leased", "started", "completed"],
            await EventTypesAsync(task.Id));
    }

    [Fact(Timeout = 120_000)]
    public async Task A_dead_letter_that_never_started_is_redriven_and_can_then_be_leased_started_and_completed()
    {
        var type = NewType("redrive.assigned");
        var task = await EnqueueAsync(type);
        var leased = await LeaseOneAsync(type, start: false);
        var dead = await FailAsync(leased);
        Assert.Equal(V1.TaskStatus.DeadLettered, dead.Task.Status);

        await RedriveAndCompleteAsync(task.Id, type, leased.FencingToken);

        Assert.Equal(
            ["enqueued", "leased", "dead_lettered", "redriven", "leased", "started", "completed"],
            await EventTypesAsync(task.Id));
    }

    [Fact(Timeout = 120_000)]
    public async Task Dead_letters_leased_and_started_in_one_step_are_redriven_by_type()
    {
        var type = NewType("redrive.bytype");
        var tasks = new List<V1.Task>();
        for (var i = 0; i < 3; i++)
        {
            tasks.Add(await EnqueueAsync(type));
        }
        foreach (var _ in tasks)
        {
            await FailAsync(await LeaseOneAsync(type, start: true));
        }

        var redriven = await Client.RedriveDeadLettersAsync(new RedriveDeadLettersRequest { Type = type }, deadline: Deadline);

        Assert.Equal(tasks.Select(t => t.Id).Order(), redriven.TaskIds.Order());
        foreach (var task in tasks)
        {
            Assert.Equal("pending", await env.StatusAsync(task.Id));
        }
        for (var i = 0; i < tasks.Count; i++)
        {
            var again = await LeaseOneAsync(type, start: true);
            await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = again.Id, FencingToken = again.FencingToken }, deadline: Deadline);
        }
        foreach (var task in tasks)
        {
            Assert.Equal("completed", await env.StatusAsync(task.Id));
        }
    }

    private async Task RedriveAndCompleteAsync(string taskId, string type, long oldToken)
    {
        var id = Guid.Parse(taskId);
        var redriven = await Client.RedriveDeadLettersAsync(new RedriveDeadLettersRequest { TaskIds = { taskId } }, deadline: Deadline);
        Assert.Equal([taskId], redriven.TaskIds);

        // A proper pending task: no trace of the last attempt's run, a fresh retry budget.
        Assert.Equal("pending", await env.StatusAsync(taskId));
        Assert.True(await env.ScalarAsync<bool>("""
            SELECT started_at IS NULL AND deadline_at IS NULL AND lease_expires_at IS NULL AND completed_at IS NULL
                   AND dead_lettered_at IS NULL AND retry_count = 0
            FROM tasks WHERE id = @id
            """, ("id", id)));
        var history = await env.ScalarAsync<string>("""
            SELECT from_status || '>' || to_status || ':' || coalesce(worker_id, '-') || ':' || coalesce(fencing_token::text, '-')
            FROM task_history WHERE task_id = @id AND event_type = 'redriven'
            """, ("id", id));
        Assert.Equal("dead_lettered>pending:-:-", history);

        var again = await LeaseOneAsync(type, start: false);
        Assert.Equal(taskId, again.Id);
        Assert.True(again.FencingToken > oldToken);
        var started = await Client.StartTaskAsync(new StartTaskRequest { TaskId = taskId, FencingToken = again.FencingToken }, deadline: Deadline);
        Assert.Equal(V1.TaskStatus.Running, started.Task.Status);
        var completed = await Client.CompleteTaskAsync(
            new CompleteTaskRequest { TaskId = taskId, FencingToken = again.FencingToken, Result = """{"ok":true}""" }, deadline: Deadline);
        Assert.Equal(V1.TaskStatus.Completed, completed.Task.Status);
        Assert.Equal("completed", await env.StatusAsync(taskId));
    }

    private async Task<V1.Task> EnqueueAsync(string type) =>
        (await Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, maxRetries: 0, retry: NoDelay) }, deadline: Deadline)).Task;

    private async Task<V1.Task> LeaseOneAsync(string type, bool start)
    {
        var request = new LeaseTasksRequest
        {
            WorkerId = "redrive-worker",
            TaskTypes = { type },
            MaxTasks = 1,
            LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(60)),
            Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(10)),
            Start = start,
        };
        return Assert.Single((await Client.LeaseTasksAsync(request, deadline: Deadline)).Tasks);
    }

    private async Task<FailTaskResponse> FailAsync(V1.Task leased) =>
        await Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = leased.Id,
            FencingToken = leased.FencingToken,
            Error = new ErrorDetail { Code = "UPSTREAM_DOWN", Message = "upstream said 503", Retryable = true, Severity = Severity.High },
        }, deadline: Deadline);

    private async Task<string[]> EventTypesAsync(string taskId) =>
        (await env.ScalarAsync<string>("SELECT string_agg(event_type, ',' ORDER BY id) FROM task_history WHERE task_id = @id",
            ("id", Guid.Parse(taskId)))).Split(',');
}

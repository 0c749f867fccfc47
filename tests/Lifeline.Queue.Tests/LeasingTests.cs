using System.Collections.Concurrent;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

public sealed class LeasingTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Sixteen_workers_on_two_instances_complete_5000_tasks_each_exactly_once()
    {
        var type = NewType("lease.race");
        const int taskCount = 5000;
        var batch = new EnqueueTasksRequest();
        for (var i = 0; i < taskCount; i++)
        {
            batch.Tasks.Add(new BatchTask { Task = Spec(type, $$"""{"i":{{i}}}""") });
        }
        Assert.Equal(taskCount, (await Client.EnqueueTasksAsync(batch)).CreatedCount);

        var second = await env.StartInstanceAsync();
        var instances = new[] { env.Queue, second };
        var completedBy = new ConcurrentDictionary<string, string>();
        var duplicates = 0;
        var workers = Enumerable.Range(0, 16).Select(w => Task.Run(async () =>
        {
            var client = instances[w % 2].Client();
            var worker = $"worker-{w}";
            while (true)
            {
                var leased = await client.LeaseAsync(worker, type, max: 1 + (w % 4) * 5);
                if (leased.Count == 0)
                {
                    return;
                }
                foreach (var task in leased)
                {
                    if (!completedBy.TryAdd(task.Id, worker))
                    {
                        Interlocked.Increment(ref duplicates);
                    }
                }
                if (w % 2 == 0)
                {
                    foreach (var task in leased)
                    {
                        await client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken });
                    }
                }
                else
                {
                    var complete = new CompleteTasksRequest();
                    complete.Completions.AddRange(leased.Select(t => new TaskCompletion { TaskId = t.Id, FencingToken = t.FencingToken }));
                    var result = await client.CompleteTasksAsync(complete);
                    Assert.Equal(leased.Count, result.AcceptedCount);
                }
            }
        })).ToList();
        await Task.WhenAll(workers);

        Assert.Equal(0, duplicates);
        Assert.Equal(taskCount, completedBy.Count);
        Assert.Equal(taskCount, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @t AND status = 'completed'", ("t", type)));
        // Exactly one lease and one completion per task: nothing lost, nothing doubled.
        Assert.Equal(taskCount, await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_history h JOIN tasks t ON t.id = h.task_id WHERE t.type = @t AND h.event_type = 'leased'", ("t", type)));
        Assert.Equal(taskCount, await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_history h JOIN tasks t ON t.id = h.task_id WHERE t.type = @t AND h.event_type = 'completed'", ("t", type)));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT max(fencing_token) FROM tasks WHERE type = @t", ("t", type)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Higher_priority_leases_first_then_oldest()
    {
        var type = NewType("lease.order");
        var low = await Client.EnqueueAsync(Spec(type, priority: 1));
        var highOld = await Client.EnqueueAsync(Spec(type, priority: 10));
        var highNew = await Client.EnqueueAsync(Spec(type, priority: 10));
        var mid = await Client.EnqueueAsync(Spec(type, priority: 5));

        var order = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            order.Add(Assert.Single(await Client.LeaseAsync("w", type)).Id);
        }
        Assert.Equal([highOld.Id, highNew.Id, mid.Id, low.Id], order);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_gets_only_the_types_it_asks_for()
    {
        var wanted = NewType("lease.wanted");
        var other = NewType("lease.other");
        await Client.EnqueueAsync(Spec(other));
        var mine = await Client.EnqueueAsync(Spec(wanted));

        var leased = await Client.LeaseAsync("w", wanted, max: 10);
        Assert.Equal([mine.Id], leased.Select(t => t.Id));
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @t AND status = 'pending'", ("t", other)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Long_poll_returns_as_soon_as_work_arrives_on_another_instance()
    {
        var type = NewType("lease.wait");
        var second = await env.StartInstanceAsync(new Dictionary<string, string?> { ["Queue:LeasePollInterval"] = "00:00:10" });
        var started = System.Diagnostics.Stopwatch.StartNew();
        var poll = second.Client().LeaseAsync("waiter", type, waitSeconds: 20);
        await Task.Delay(300);
        Assert.False(poll.IsCompleted);

        var task = await Client.EnqueueAsync(Spec(type)); // on the first instance: the signal crosses via Redis
        var leased = Assert.Single(await poll);
        Assert.Equal(task.Id, leased.Id);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"long poll took {started.Elapsed}");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Long_poll_with_nothing_to_do_returns_empty_after_the_wait()
    {
        var type = NewType("lease.empty");
        var started = System.Diagnostics.Stopwatch.StartNew();
        var leased = await Client.LeaseAsync("w", type, waitSeconds: 1);
        Assert.Empty(leased);
        Assert.InRange(started.Elapsed, TimeSpan.FromMilliseconds(900), TimeSpan.FromSeconds(5));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Leasing_keeps_working_while_redis_is_down()
    {
        var type = NewType("lease.noredis");
        await env.Redis.StopAsync();
        try
        {
            var task = await Client.EnqueueAsync(Spec(type));
            var leased = Assert.Single(await Client.LeaseAsync("w", type, waitSeconds: 5));
            Assert.Equal(task.Id, leased.Id);
            await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
            Assert.Equal("completed", await env.StatusAsync(task.Id));
        }
        finally
        {
            await env.Redis.RestartAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Lease_with_start_hands_out_running_tasks_in_one_step()
    {
        var type = NewType("lease.start");
        var task = await Client.EnqueueAsync(Spec(type, timeoutSeconds: 60));
        var request = new LeaseTasksRequest { WorkerId = "w", TaskTypes = { type }, Start = true };
        var leased = Assert.Single((await Client.LeaseTasksAsync(request)).Tasks);

        Assert.Equal(V1.TaskStatus.Running, leased.Status);
        Assert.NotNull(leased.StartedAt);
        Assert.Equal(1L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE id = @id AND status = 'running' AND deadline_at > now() + interval '50 seconds'", ("id", Guid.Parse(task.Id))));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        var history = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events;
        Assert.Equal(["enqueued", "leased", "completed"], history.Select(e => e.EventType));
        Assert.Equal(V1.TaskStatus.Running, history[1].ToStatus);
    }
}

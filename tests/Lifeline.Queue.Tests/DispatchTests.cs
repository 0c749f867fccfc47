using System.Collections.Concurrent;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.ServiceDefaults.Security;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// QueueService.Dispatch, a worker's bidirectional stream: tasks are pushed leased and running, never more than the
/// free slots; outcomes and lease calls on the stream follow the unary calls' rules and are answered by acks; a broken
/// stream leaves its tasks to run out their leases, after which they are leased again and late outcomes are refused.
/// </summary>
public sealed class DispatchTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Open_pushes_ready_tasks_leased_and_running_and_an_accepted_complete_is_acked_with_the_task()
    {
        var type = NewType("dispatch.basic");
        var enqueued = new List<V1.Task>();
        for (var i = 0; i < 3; i++)
        {
            enqueued.Add(await Client.EnqueueAsync(Spec(type, $$"""{"n":{{i}}}""")));
        }
        await using var stream = await DispatchStream.OpenAsync(Client, "w-basic", [type], slots: 5);

        var pushed = await stream.TasksAsync(3);
        Assert.Equal(enqueued.Select(t => t.Id).Order(), pushed.Select(t => t.Id).Order());
        Assert.All(pushed, t =>
        {
            Assert.Equal(V1.TaskStatus.Running, t.Status);
            Assert.Equal("w-basic", t.AssignedWorkerId);
            Assert.Equal(1, t.FencingToken);
            Assert.NotNull(t.StartedAt);
        });

        var ack = await stream.CompleteAsync(pushed[0], """{"ok":true}""");
        Assert.True(ack.Accepted);
        Assert.Equal(pushed[0].Id, ack.TaskId);
        Assert.Equal(V1.TaskStatus.Completed, ack.Task.Status);
        Assert.Equal(0, ack.Code);
        Assert.Equal("completed", await env.StatusAsync(pushed[0].Id));
        var history = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = pushed[0].Id })).Events;
        Assert.Equal(["enqueued", "leased", "completed"], history.Select(e => e.EventType));
        Assert.Equal("true", history[1].Details["started"]);

        var progress = await stream.ProgressAsync(pushed[1], 40);
        Assert.True(progress.Accepted);
        Assert.Equal(40, progress.Task.ProgressPercent);
        var before = pushed[2].LeaseExpiresAt.ToDateTime();
        var extended = await stream.ExtendAsync(pushed[2], 600);
        Assert.True(extended.Accepted);
        Assert.True(extended.Task.LeaseExpiresAt.ToDateTime() > before.AddSeconds(500));

        var failed = await stream.FailAsync(pushed[1], retryable: false);
        Assert.True(failed.Accepted);
        Assert.False(failed.WillRetry);
        Assert.Equal(V1.TaskStatus.Failed, failed.Task.Status);
        var released = await stream.ReleaseAsync(pushed[2]);
        Assert.True(released.Accepted);

        // The released task is ready again, and this stream has free slots: it comes back, with a new token.
        var again = await stream.NextTaskAsync();
        Assert.Equal(pushed[2].Id, again.Id);
        Assert.Equal(2, again.FencingToken);
        Assert.True((await stream.CompleteAsync(again)).Accepted);
        Assert.Null(await stream.CloseAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Never_more_tasks_in_flight_than_slots_also_after_capacity_changes()
    {
        var type = NewType("dispatch.slots");
        for (var i = 0; i < 20; i++)
        {
            await Client.EnqueueAsync(Spec(type));
        }
        const string worker = "w-slots";
        await using var stream = await DispatchStream.OpenAsync(Client, worker, [type], slots: 4);
        var held = new Queue<V1.Task>(await stream.TasksAsync(4));
        var quiet = TimeSpan.FromSeconds(1); // four of the queue's lease polls (250 ms in these tests)
        Assert.True(await stream.NothingPushedWithinAsync(quiet));
        Assert.Equal(4, await RunningAsync(worker));

        // Lowered to 2 while 4 are held: nothing new until fewer than 2 are held.
        await stream.CapacityAsync(2);
        Assert.True((await stream.CompleteAsync(held.Dequeue())).Accepted);
        Assert.True((await stream.CompleteAsync(held.Dequeue())).Accepted);
        Assert.True(await stream.NothingPushedWithinAsync(quiet));
        Assert.Equal(2, await RunningAsync(worker));
        Assert.True((await stream.CompleteAsync(held.Dequeue())).Accepted);
        held.Enqueue(await stream.NextTaskAsync());
        Assert.True(await stream.NothingPushedWithinAsync(quiet));
        Assert.Equal(2, await RunningAsync(worker));

        // Raised to 6: four more at once.
        await stream.CapacityAsync(6);
        foreach (var task in await stream.TasksAsync(4))
        {
            held.Enqueue(task);
        }
        Assert.True(await stream.NothingPushedWithinAsync(quiet));
        Assert.Equal(6, await RunningAsync(worker));

        // 0 pauses dispatch: the held tasks end, nothing new comes.
        await stream.CapacityAsync(0);
        while (held.TryDequeue(out var task))
        {
            Assert.True((await stream.CompleteAsync(task)).Accepted);
        }
        Assert.True(await stream.NothingPushedWithinAsync(quiet));
        Assert.Equal(0, await RunningAsync(worker));
        Assert.Equal(6, stream.MaxHeld);
        Assert.Equal(11, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = 'pending'", ("type", type)));

        // And 1 resumes it, one at a time.
        await stream.CapacityAsync(1);
        var next = await stream.NextTaskAsync();
        Assert.True(await stream.NothingPushedWithinAsync(quiet));
        Assert.True((await stream.CompleteAsync(next)).Accepted);
        Assert.Equal(6, stream.MaxHeld); // never above the slots in force
        Assert.Null(await stream.CloseAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Many_streams_on_two_instances_racing_for_the_same_tasks_push_each_once_and_complete_each_once()
    {
        var type = NewType("dispatch.race");
        const int count = 300;
        var batch = new EnqueueTasksRequest();
        for (var i = 0; i < count; i++)
        {
            batch.Tasks.Add(new BatchTask { Task = Spec(type, $$"""{"i":{{i}}}""") });
        }
        var second = await env.StartInstanceAsync();
        var pushes = new ConcurrentDictionary<string, int>();
        var accepted = new ConcurrentDictionary<string, int>();
        var streams = new List<DispatchStream>();
        for (var s = 0; s < 8; s++)
        {
            var host = s % 2 == 0 ? env.Queue : second;
            streams.Add(await DispatchStream.OpenAsync(host.Client(), $"racer-{s}", [type], slots: 3 + s % 4));
        }
        // Enqueued after the streams are open, so they race from the first task on.
        await Client.EnqueueTasksAsync(batch);

        using var done = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var completions = new ConcurrentBag<Task>();
        var workers = streams.Select(async (stream, s) =>
        {
            var slots = 3 + s % 4;
            var random = new Random(s);
            while (accepted.Count < count && !done.IsCancellationRequested)
            {
                V1.Task task;
                try
                {
                    task = await stream.NextTaskAsync(TimeSpan.FromMilliseconds(500));
                }
                catch (TimeoutException)
                {
                    continue; // the other streams are taking the rest
                }
                pushes.AddOrUpdate(task.Id, 1, (_, n) => n + 1);
                Assert.True(stream.Held <= slots, $"stream {s} holds {stream.Held} tasks with {slots} slots");
                var delay = random.Next(0, 20);
                completions.Add(Task.Run(async () =>
                {
                    await Task.Delay(delay);
                    var ack = await stream.CompleteAsync(task);
                    Assert.True(ack.Accepted, $"{task.Id}: {ack.Reason} {ack.Message}");
                    accepted.AddOrUpdate(task.Id, 1, (_, n) => n + 1);
                }));
            }
        }).ToList();
        await Task.WhenAll(workers);
        await Task.WhenAll(completions);

        Assert.Equal(count, pushes.Count);
        Assert.All(pushes, p => Assert.Equal(1, p.Value));
        Assert.Equal(count, accepted.Count);
        Assert.All(accepted, a => Assert.Equal(1, a.Value));
        Assert.True(streams.All(s => s.MaxHeld <= 6), "a stream held more tasks than its slots");
        Assert.Equal(count, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = 'completed'", ("type", type)));
        Assert.Equal(0, await env.ScalarAsync<long>("""
            SELECT count(*) FROM (
                SELECT h.task_id FROM task_history h JOIN tasks t ON t.id = h.task_id
                WHERE t.type = @type AND h.event_type IN ('leased', 'completed')
                GROUP BY h.task_id HAVING count(*) FILTER (WHERE h.event_type = 'leased') <> 1 OR count(*) FILTER (WHERE h.event_type = 'completed') <> 1) x
            """, ("type", type)));
        foreach (var stream in streams)
        {
            Assert.Null(await stream.CloseAsync());
            await stream.DisposeAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Outcomes_with_a_stale_token_are_refused_by_ack_and_change_nothing()
    {
        var type = NewType("dispatch.stale");
        await Client.EnqueueAsync(Spec(type));
        await using var stream = await DispatchStream.OpenAsync(Client, "w-stale", [type], slots: 1);
        var task = await stream.NextTaskAsync();
        var id = Guid.Parse(task.Id);
        var row = () => env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", id));
        var historyCount = () => env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", id));
        var before = await row();
        var historyBefore = await historyCount();

        foreach (var stale in new[] { task.FencingToken + 1, 999L })
        {
            foreach (var ack in new[]
            {
                await stream.ProgressAsync(task, 50, stale),
                await stream.ExtendAsync(task, 60, stale),
                await stream.CompleteAsync(task, token: stale),
                await stream.FailAsync(task, retryable: true, token: stale),
                await stream.ReleaseAsync(task, token: stale),
            })
            {
                Assert.False(ack.Accepted);
                Assert.Equal((int)StatusCode.FailedPrecondition, ack.Code);
                Assert.Equal("STALE_FENCING_TOKEN", ack.Reason);
                Assert.Equal(task.Id, ack.TaskId);
                Assert.NotEmpty(ack.Message);
                Assert.Null(ack.Task);
            }
        }
        Assert.Equal(before, await row());
        Assert.Equal(historyBefore, await historyCount());
        Assert.False(stream.Ended.IsCompleted, "a refused outcome must not end the stream");

        // A refused complete of a pushed task frees its slot all the same (the contract): the worker holds it still,
        // so the next ready task is pushed; the right token still completes the first.
        var other = await Client.EnqueueAsync(Spec(type));
        Assert.Equal(other.Id, (await stream.NextTaskAsync()).Id);
        Assert.True((await stream.CompleteAsync(task)).Accepted);
        Assert.Equal("completed", await env.StatusAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_repeated_complete_of_a_completed_task_is_accepted_and_changes_nothing()
    {
        var type = NewType("dispatch.repeat");
        await Client.EnqueueAsync(Spec(type));
        await using var stream = await DispatchStream.OpenAsync(Client, "w-repeat", [type], slots: 2);
        var task = await stream.NextTaskAsync();
        Assert.True((await stream.CompleteAsync(task, """{"r":1}""")).Accepted);
        var row = await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(task.Id)));

        // Racing repeats (an ack lost, the outcome sent again): each accepted, one completion recorded.
        var repeats = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => stream.CompleteAsync(task, """{"r":1}""")));
        Assert.All(repeats, ack =>
        {
            Assert.True(ack.Accepted);
            Assert.Equal(V1.TaskStatus.Completed, ack.Task.Status);
        });
        var unary = await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = """{"r":1}""" });
        Assert.Equal(V1.TaskStatus.Completed, unary.Task.Status);
        Assert.Equal(row, await env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(task.Id))));
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'completed'",
            ("id", Guid.Parse(task.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_failed_attempt_with_retries_left_comes_back_on_the_stream_with_a_new_token()
    {
        var type = NewType("dispatch.retry");
        await Client.EnqueueAsync(Spec(type, maxRetries: 2));
        await using var stream = await DispatchStream.OpenAsync(Client, "w-retry", [type], slots: 1);
        var first = await stream.NextTaskAsync();
        var ack = await stream.FailAsync(first, retryable: true, retryAfter: TimeSpan.Zero);
        Assert.True(ack.Accepted);
        Assert.True(ack.WillRetry);
        var second = await stream.NextTaskAsync();
        Assert.Equal(first.Id, second.Id);
        Assert.Equal(first.FencingToken + 1, second.FencingToken);
        Assert.Equal(1, second.RetryCount);
        Assert.False((await stream.CompleteAsync(first)).Accepted);
        Assert.True((await stream.CompleteAsync(second)).Accepted);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_killed_stream_leaves_its_tasks_to_expire_then_they_are_leased_again_and_late_outcomes_are_refused()
    {
        var type = NewType("dispatch.killed");
        for (var i = 0; i < 3; i++)
        {
            await Client.EnqueueAsync(Spec(type, maxRetries: 3));
        }
        var dying = await DispatchStream.OpenAsync(Client, "w-dying", [type], slots: 3, leaseSeconds: 2);
        var held = await dying.TasksAsync(3);
        dying.Kill();
        await dying.DisposeAsync();
        // Untouched by the break: still running, still the dead worker's, until the lease runs out.
        Assert.Equal(3, await RunningAsync("w-dying"));

        await using var heir = await DispatchStream.OpenAsync(Client, "w-heir", [type], slots: 3);
        var again = await heir.TasksAsync(3, TimeSpan.FromSeconds(30));
        Assert.Equal(held.Select(t => t.Id).Order(), again.Select(t => t.Id).Order());
        foreach (var task in again)
        {
            var old = held.Single(t => t.Id == task.Id);
            Assert.True(task.FencingToken > old.FencingToken);
            Assert.Equal(1, task.RetryCount);
            var history = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events.Select(e => e.EventType).ToList();
            Assert.Contains("lease_expired", history);

            // The dead worker's late outcomes: refused on a stream and unary alike.
            var late = await heir.CompleteAsync(old);
            Assert.False(late.Accepted);
            Assert.Equal("STALE_FENCING_TOKEN", late.Reason);
            var unary = await RefusedAsync(() => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = old.Id, FencingToken = old.FencingToken }).ResponseAsync,
                StatusCode.FailedPrecondition);
            Assert.Equal("STALE_FENCING_TOKEN", unary.ErrorInfo().Reason);
        }
        foreach (var task in again)
        {
            Assert.True((await heir.CompleteAsync(task)).Accepted);
        }
        Assert.Equal(3, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = 'completed'", ("type", type)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Tasks_leased_for_a_stream_that_broke_before_they_were_written_are_not_lost()
    {
        // 200 KiB payloads and a worker that reads nothing: HTTP/2 flow control lets a few tens of KiB reach it, so
        // the queue leases all eight, the first write blocks and the other seven wait unwritten when the stream breaks.
        var type = NewType("dispatch.unwritten");
        var payload = $$"""{"pad":"{{new string('x', 200 * 1024)}}"}""";
        for (var i = 0; i < 8; i++)
        {
            await Client.EnqueueAsync(Spec(type, payload));
        }
        var mute = await DispatchStream.StartAsync(Client, DispatchStream.Open("w-mute", [type], slots: 8, leaseSeconds: 2), read: false);
        await WaitForAsync(async () => await RunningAsync("w-mute") == 8);
        mute.Kill();
        await mute.DisposeAsync();

        await using var heir = await DispatchStream.OpenAsync(Client, "w-heir2", [type], slots: 8);
        var again = await heir.TasksAsync(8, TimeSpan.FromSeconds(30));
        Assert.Equal(8, again.Select(t => t.Id).Distinct().Count());
        foreach (var task in again)
        {
            Assert.Equal(2, task.FencingToken);
            Assert.True((await heir.CompleteAsync(task)).Accepted);
        }
        Assert.Equal(8, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = 'completed'", ("type", type)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_half_closed_stream_ends_with_OK_and_leases_nothing_more()
    {
        var type = NewType("dispatch.close");
        await using var stream = await DispatchStream.OpenAsync(Client, "w-close", [type], slots: 2);
        Assert.Null(await stream.CloseAsync());
        var task = await Client.EnqueueAsync(Spec(type));
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal("pending", await env.StatusAsync(task.Id));
        Assert.Empty(stream.Pushed);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_tasks_are_never_pushed_and_calls_naming_them_are_NOT_FOUND_acks()
    {
        var type = NewType("dispatch.tenant");
        var other = env.Queue.Client("other-tenant");
        var theirs = await other.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await other.LeaseAsync("their-worker", type));
        var pending = await other.EnqueueAsync(Spec(type));
        var row = () => env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(theirs.Id)));
        var before = await row();

        await using var stream = await DispatchStream.OpenAsync(Client, "w-tenant", [type], slots: 2);
        Assert.True(await stream.NothingPushedWithinAsync(TimeSpan.FromSeconds(1)));
        foreach (var ack in new[]
        {
            await stream.CompleteAsync(leased),
            await stream.FailAsync(leased, retryable: false),
            await stream.ProgressAsync(leased, 10),
            await stream.ExtendAsync(leased, 60),
            await stream.ReleaseAsync(leased),
        })
        {
            Assert.False(ack.Accepted);
            Assert.Equal((int)StatusCode.NotFound, ack.Code);
            Assert.Equal("TASK_NOT_FOUND", ack.Reason);
        }
        Assert.Equal(before, await row());
        Assert.Equal("pending", await env.StatusAsync(pending.Id));
        Assert.Empty(stream.Pushed);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_reader_or_an_anonymous_caller_is_refused_and_nothing_is_leased()
    {
        var type = NewType("dispatch.roles");
        var task = await env.Queue.Client("acme").EnqueueAsync(Spec(type));
        var reader = new QueueService.QueueServiceClient(env.Queue.As("acme", Role.Reader));
        await using (var refused = await DispatchStream.OpenAsync(reader, "w-reader", [type], slots: 1))
        {
            var error = await refused.Ended;
            Assert.NotNull(error);
            Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
            Assert.Equal("ROLE_NOT_ALLOWED", error.GetRpcStatus()!.ErrorInfo().Reason);
        }
        var anonymous = new QueueService.QueueServiceClient(env.Queue.Anonymous);
        await using (var refused = await DispatchStream.OpenAsync(anonymous, "w-anon", [type], slots: 1))
        {
            var error = await refused.Ended;
            Assert.NotNull(error);
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        }
        Assert.Equal("pending", await env.StatusAsync(task.Id));

        // The worker role of the same tenant gets it.
        await using var worker = await DispatchStream.OpenAsync(new QueueService.QueueServiceClient(env.Queue.As("acme", Role.Worker)), "w-acme", [type], 1);
        Assert.Equal(task.Id, (await worker.NextTaskAsync()).Id);
    }

    private Task<long> RunningAsync(string worker) =>
        env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE assigned_worker_id = @w AND status = 'running'", ("w", worker));

    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < until, "condition not met within 30 s");
            await Task.Delay(50);
        }
    }
}

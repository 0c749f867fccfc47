using System.Collections.Concurrent;
using Grpc.Core;
using Lifeline.Queue.Leasing;
using Lifeline.Queue.V1;
using Microsoft.Extensions.DependencyInjection;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A completion on a dispatch stream refills the slot it frees in its own transaction (CompleteAndRefill): one commit
/// completes the task and leases the next. These tests prove it is one transaction (the history rows share a
/// transaction id), that a dependent made ready by the completion is leased by it, that a refused completion still
/// frees its slot, and that a completion racing its twin on the unary call completes the task once and pushes
/// nothing twice.
/// </summary>
public sealed class DispatchRefillTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private CompleteAndRefill Refills => env.Queue.App.Services.GetRequiredService<CompleteAndRefill>();

    /// <summary>The transaction that wrote a history event (xmin of its row).</summary>
    private Task<string> WrittenByAsync(string taskId, string eventType) => env.ScalarAsync<string>(
        "SELECT xmin::text FROM task_history WHERE task_id = @id AND event_type = @event", ("id", Guid.Parse(taskId)), ("event", eventType));

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_completion_and_the_lease_of_the_slot_it_frees_commit_in_one_transaction()
    {
        var type = NewType("refill.one-tx");
        for (var i = 0; i < 3; i++)
        {
            await Client.EnqueueAsync(Spec(type, $$"""{"n":{{i}}}"""));
        }
        await using var stream = await DispatchStream.OpenAsync(Client, "w-refill", [type], slots: 1);
        var (oneTrips, fallBacks) = (Refills.OneTrips, Refills.FallBacks);

        var first = await stream.NextTaskAsync();
        Assert.True((await stream.CompleteAsync(first, """{"done":1}""")).Accepted);
        var second = await stream.NextTaskAsync();
        Assert.True((await stream.CompleteAsync(second)).Accepted);
        var third = await stream.NextTaskAsync();

        Assert.Equal(await WrittenByAsync(first.Id, "completed"), await WrittenByAsync(second.Id, "leased"));
        Assert.Equal(await WrittenByAsync(second.Id, "completed"), await WrittenByAsync(third.Id, "leased"));
        // Leased as a lease would: running, fenced, for this worker, with a lease and a deadline.
        Assert.Equal(V1.TaskStatus.Running, third.Status);
        Assert.Equal(1, third.FencingToken);
        Assert.Equal("w-refill", third.AssignedWorkerId);
        Assert.NotNull(third.LeaseExpiresAt);
        Assert.Equal("completed", await env.StatusAsync(first.Id));
        Assert.Equal("""{"done": 1}""", await env.ScalarAsync<string>("SELECT result::text FROM tasks WHERE id = @id", ("id", Guid.Parse(first.Id))));
        Assert.True((await stream.CompleteAsync(third)).Accepted);
        Assert.True(await stream.NothingPushedWithinAsync(TimeSpan.FromMilliseconds(500)));
        // Each plain completion with its refill took one round trip (this class's tests run one at a time).
        Assert.Equal(oneTrips + 3, Refills.OneTrips);
        Assert.Equal(fallBacks, Refills.FallBacks);
        Assert.Null(await stream.CloseAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_task_that_gained_a_dependent_while_it_ran_stops_the_one_trip_and_its_completion_readies_and_leases_the_dependent()
    {
        var type = NewType("refill.gained");
        var parent = await Client.EnqueueAsync(Spec(type));
        await using var stream = await DispatchStream.OpenAsync(Client, "w-gained", [type], slots: 1);
        var pushed = await stream.NextTaskAsync();
        Assert.Equal(parent.Id, pushed.Id);
        // Enqueued while the parent runs: the stream pushed the parent as a task without dependents.
        var child = await Client.EnqueueAsync(Spec(type));
        await Client.AddDependencyAsync(new AddDependencyRequest { TaskId = child.Id, DependsOnTaskId = parent.Id });
        Assert.True(await stream.NothingPushedWithinAsync(TimeSpan.FromMilliseconds(300)));
        var (oneTrips, fallBacks) = (Refills.OneTrips, Refills.FallBacks);

        Assert.True((await stream.CompleteAsync(pushed)).Accepted);
        var next = await stream.NextTaskAsync();

        Assert.Equal(child.Id, next.Id);
        Assert.Equal(fallBacks + 1, Refills.FallBacks);
        Assert.Equal(oneTrips, Refills.OneTrips);
        // The long way completed the parent, readied the child and leased it in one transaction; the stopped batch
        // (which had completed the parent and leased nothing) left no row behind.
        Assert.Equal(await WrittenByAsync(parent.Id, "completed"), await WrittenByAsync(child.Id, "leased"));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'completed'",
            ("id", Guid.Parse(parent.Id))));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'leased'",
            ("id", Guid.Parse(child.Id))));
        Assert.Equal("met", await env.ScalarAsync<string>("SELECT state FROM task_dependencies WHERE task_id = @id", ("id", Guid.Parse(child.Id))));
        Assert.True((await stream.CompleteAsync(next)).Accepted);
        Assert.Null(await stream.CloseAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dependent_made_ready_by_the_completion_is_leased_in_the_same_transaction()
    {
        var type = NewType("refill.dependent");
        var parent = await Client.EnqueueAsync(Spec(type));
        var child = await Client.EnqueueAsync(Spec(type));
        await Client.AddDependencyAsync(new AddDependencyRequest { TaskId = child.Id, DependsOnTaskId = parent.Id });
        await using var stream = await DispatchStream.OpenAsync(Client, "w-dependent", [type], slots: 1);

        var pushed = await stream.NextTaskAsync();
        Assert.Equal(parent.Id, pushed.Id);
        Assert.True(await stream.NothingPushedWithinAsync(TimeSpan.FromMilliseconds(300))); // the child waits for its parent
        Assert.True((await stream.CompleteAsync(pushed)).Accepted);

        var next = await stream.NextTaskAsync();
        Assert.Equal(child.Id, next.Id);
        Assert.Equal(await WrittenByAsync(parent.Id, "completed"), await WrittenByAsync(child.Id, "leased"));
        Assert.True((await stream.CompleteAsync(next)).Accepted);
        Assert.Null(await stream.CloseAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_refused_completion_frees_its_slot_changes_nothing_and_the_slot_is_refilled()
    {
        var type = NewType("refill.refused");
        await Client.EnqueueAsync(Spec(type));
        await Client.EnqueueAsync(Spec(type));
        await using var stream = await DispatchStream.OpenAsync(Client, "w-refused", [type], slots: 1);
        var first = await stream.NextTaskAsync();
        var historyBefore = await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(first.Id)));
        var fallBacks = Refills.FallBacks;

        var ack = await stream.CompleteAsync(first, token: first.FencingToken + 5);

        Assert.False(ack.Accepted);
        Assert.Equal((int)StatusCode.FailedPrecondition, ack.Code);
        Assert.Equal("STALE_FENCING_TOKEN", ack.Reason);
        // The slot counts as freed (the worker said it is done with the task), so the other task comes; the refused
        // completion changed nothing: the first task still runs, under its lease, with no new history.
        var second = await stream.NextTaskAsync();
        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal(fallBacks + 1, Refills.FallBacks); // the refusal is read the long way
        Assert.Equal("running", await env.StatusAsync(first.Id));
        Assert.Equal(historyBefore, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(first.Id))));
        Assert.True((await stream.CompleteAsync(second)).Accepted);
        Assert.True((await stream.CompleteAsync(first)).Accepted);
        Assert.Null(await stream.CloseAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Completions_on_the_stream_racing_their_twins_on_the_unary_call_complete_each_task_once_and_push_none_twice()
    {
        var type = NewType("refill.twins");
        const int count = 60;
        var batch = new EnqueueTasksRequest();
        for (var i = 0; i < count; i++)
        {
            batch.Tasks.Add(new BatchTask { Task = Spec(type, $$"""{"i":{{i}}}""") });
        }
        await Client.EnqueueTasksAsync(batch);
        var second = await env.StartInstanceAsync();
        var streams = new List<DispatchStream>();
        for (var s = 0; s < 4; s++)
        {
            streams.Add(await DispatchStream.OpenAsync((s % 2 == 0 ? env.Queue : second).Client(), $"twin-{s}", [type], slots: 1 + s % 2));
        }
        var pushes = new ConcurrentDictionary<string, int>();
        var completed = new ConcurrentDictionary<string, int>();
        using var done = new CancellationTokenSource(TimeSpan.FromMinutes(2));

        await Task.WhenAll(streams.Select(async (stream, s) =>
        {
            var unary = (s % 2 == 0 ? second : env.Queue).Client(); // the twin goes to the other instance
            while (completed.Count < count && !done.IsCancellationRequested)
            {
                V1.Task task;
                try
                {
                    task = await stream.NextTaskAsync(TimeSpan.FromMilliseconds(500));
                }
                catch (TimeoutException)
                {
                    continue;
                }
                pushes.AddOrUpdate(task.Id, 1, (_, n) => n + 1);
                // Both at once: the stream's completion (which refills) and the unary twin under the same token.
                var onStream = stream.CompleteAsync(task, """{"by":"stream"}""");
                var twin = unary.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = """{"by":"unary"}""" })
                    .ResponseAsync;
                var ack = await onStream;
                var answer = await twin;
                // Whichever committed first completed it; the other is a repeat under the same token: accepted, no change.
                Assert.True(ack.Accepted, $"{task.Id}: {ack.Reason} {ack.Message}");
                Assert.Equal(V1.TaskStatus.Completed, answer.Task.Status);
                completed.AddOrUpdate(task.Id, 1, (_, n) => n + 1);
            }
        }));

        Assert.Equal(count, pushes.Count);
        Assert.All(pushes, p => Assert.Equal(1, p.Value));
        Assert.All(completed, c => Assert.Equal(1, c.Value));
        Assert.Equal(0, await env.ScalarAsync<long>("""
            SELECT count(*) FROM (
                SELECT h.task_id FROM task_history h JOIN tasks t ON t.id = h.task_id
                WHERE t.type = @type
                GROUP BY h.task_id
                HAVING count(*) FILTER (WHERE h.event_type = 'leased') <> 1 OR count(*) FILTER (WHERE h.event_type = 'completed') <> 1) x
            """, ("type", type)));
        Assert.Equal(count, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = 'completed'", ("type", type)));
        foreach (var stream in streams)
        {
            Assert.Null(await stream.CloseAsync());
            await stream.DisposeAsync();
        }
    }
}

/// <summary>A refill is admitted by the worker gate like every lease: a worker that may no longer lease gets nothing new.</summary>
public sealed class DispatchRefillAdmissionTests(RecoveryQueueEnvironment env) : IClassFixture<RecoveryQueueEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_draining_workers_completion_is_applied_and_acked_but_refills_nothing_and_the_stream_ends_FAILED_PRECONDITION()
    {
        var type = NewType("refill.draining");
        const string worker = "w-refill-draining";
        await env.RegisterWorkerAsync(worker, "online", type);
        var client = env.Queue.Client();
        var first = await client.EnqueueAsync(Spec(type));
        var second = await client.EnqueueAsync(Spec(type));
        var waiting = await client.EnqueueAsync(Spec(type));
        await using var stream = await DispatchStream.OpenAsync(client, worker, [type], slots: 1);
        var pushed = await stream.NextTaskAsync();
        Assert.Equal(first.Id, pushed.Id);
        // Online: the completion's refill is admitted and leases the next.
        Assert.True((await stream.CompleteAsync(pushed)).Accepted);
        var refilled = await stream.NextTaskAsync();
        Assert.Equal(second.Id, refilled.Id);

        await env.Mirror.HashSetAsync(Lifeline.ServiceDefaults.Workers.WorkerMirror.WorkerKey("default", worker), "status", "draining");
        await Task.Delay(TimeSpan.FromMilliseconds(300)); // past the stream's reuse of its last admission (100 ms)
        var ack = await stream.CompleteAsync(refilled);

        Assert.True(ack.Accepted);
        Assert.Equal("completed", await env.StatusAsync(second.Id));
        var ended = await stream.Ended.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotNull(ended);
        Assert.Equal(StatusCode.FailedPrecondition, ended.StatusCode);
        Assert.Contains("draining", ended.Status.Detail);
        Assert.Equal("pending", await env.StatusAsync(waiting.Id));
        Assert.Equal(2, stream.Pushed.Count);
    }
}

/// <summary>
/// The database drops the queue's hot-path connections again and again while completions with refills flow on dispatch streams:
/// streams end with UNAVAILABLE (never INTERNAL or UNKNOWN), a worker finishes what it held with the unary call and opens
/// a new stream, and in the end every task is completed exactly once — none completed twice, none lost, none dead.
/// </summary>
public sealed class DispatchRefillFaultTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Connections_killed_while_completions_refill_lose_no_task_and_complete_none_twice()
    {
        var client = env.Queue.Client();
        var type = NewType("refill.killed");
        const int count = 150;
        var batch = new EnqueueTasksRequest();
        for (var i = 0; i < count; i++)
        {
            batch.Tasks.Add(new BatchTask { Task = Spec(type, $$"""{"i":{{i}}}""", maxRetries: 100) });
        }
        await client.EnqueueTasksAsync(batch);

        using var killing = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var kills = 0;
        var killer = Task.Run(async () =>
        {
            while (!killing.IsCancellationRequested)
            {
                await Task.Delay(150);
                kills += (int)await env.ScalarAsync<long>("""
                    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE datname = current_database() AND application_name LIKE '%(hot path)'
                    """); // the queue's connections for a task's life (this test's own are left alone)
            }
        });

        var streamErrors = new ConcurrentBag<StatusCode>();
        var unaryAnswers = new ConcurrentBag<StatusCode>();
        using var done = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        async Task<long> CompletedAsync() =>
            await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status = 'completed'", ("type", type));

        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            while (!done.IsCancellationRequested && await CompletedAsync() < count)
            {
                // A short lease: a task leased for a stream that broke before it was written comes back within seconds.
                var stream = await DispatchStream.OpenAsync(client, $"killed-{w}", [type], slots: 1, leaseSeconds: 2);
                await using (stream)
                {
                    while (!done.IsCancellationRequested)
                    {
                        V1.Task task;
                        try
                        {
                            task = await stream.NextTaskAsync(TimeSpan.FromMilliseconds(500));
                        }
                        catch (System.Threading.Channels.ChannelClosedException)
                        {
                            break; // the stream ended
                        }
                        catch (TimeoutException)
                        {
                            if (stream.Ended.IsCompleted || await CompletedAsync() >= count)
                            {
                                break;
                            }
                            continue;
                        }
                        try
                        {
                            // An ack within 10 s, or the stream's end: a call the store failed must not stay unanswered on an open stream.
                            var ack = await stream.CallAsync(new DispatchRequest
                            {
                                Complete = new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = """{"by":"stream"}""" },
                            }, TimeSpan.FromSeconds(10));
                            if (ack.Accepted)
                            {
                                continue;
                            }
                        }
                        catch (Exception ex) when (ex is TimeoutException && stream.Ended.IsCompleted || ex is RpcException or InvalidOperationException)
                        {
                            // The stream ended before the ack (or before the send): finish the task as a worker library does,
                            // with the unary call.
                        }
                        await CompleteAloneAsync(client, task, unaryAnswers, done.Token);
                        if (stream.Ended.IsCompleted)
                        {
                            break;
                        }
                    }
                    if (stream.Ended.IsCompleted && await stream.Ended is { } error)
                    {
                        streamErrors.Add(error.StatusCode);
                    }
                }
            }
        })).ToList();
        await killer;
        await Task.WhenAll(workers);

        Assert.True(kills > 0, "no connection was killed");
        Assert.NotEmpty(streamErrors); // the kills reached the streams' transactions
        Assert.Equal(count, await CompletedAsync());
        Assert.All(streamErrors, code => Assert.Contains(code, new[] { StatusCode.Unavailable, StatusCode.Cancelled }));
        Assert.All(unaryAnswers, code => Assert.Contains(code, new[] { StatusCode.OK, StatusCode.FailedPrecondition }));
        Assert.Equal(0, await env.ScalarAsync<long>("""
            SELECT count(*) FROM (
                SELECT h.task_id FROM task_history h JOIN tasks t ON t.id = h.task_id
                WHERE t.type = @type GROUP BY h.task_id HAVING count(*) FILTER (WHERE h.event_type = 'completed') <> 1) x
            """, ("type", type)));
    }

    /// <summary>
    /// CompleteTask with the task's token, tried again while the store is unavailable: OK, or FAILED_PRECONDITION when
    /// the lease ran out meanwhile and the task went to another holder (who completes it).
    /// </summary>
    private static async Task CompleteAloneAsync(QueueService.QueueServiceClient client, V1.Task task, ConcurrentBag<StatusCode> answers,
        CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken, Result = """{"by":"unary"}""" },
                    deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
                answers.Add(StatusCode.OK);
                return;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && attempt < 50)
            {
                await Task.Delay(100, ct);
            }
            catch (RpcException ex)
            {
                answers.Add(ex.StatusCode);
                return;
            }
        }
    }
}

using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// Group commit under attack: hundreds of racing calls of one kind, from two tenants, mixing valid calls with
/// stale tokens, unknown ids, another tenant's ids and twin repeats. Each caller must get its own right answer,
/// every task must change exactly once, and the calls must really have shared transactions (rows written by
/// one transaction share their <c>xmin</c>).
/// </summary>
public sealed class GroupCommitTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient A => env.Queue.Client("tenant-a");

    private QueueService.QueueServiceClient B => env.Queue.Client("tenant-b");

    private Task<long> TransactionsAsync(string type, string eventType) => env.ScalarAsync<long>(
        "SELECT count(DISTINCT xmin::text) FROM task_history WHERE task_type = @type AND event_type = @event", ("type", type), ("event", eventType));

    private Task<long> EventsAsync(string type, string eventType) => env.ScalarAsync<long>(
        "SELECT count(*) FROM task_history WHERE task_type = @type AND event_type = @event", ("type", type), ("event", eventType));

    private static async Task<List<V1.Task>> EnqueueManyAsync(QueueService.QueueServiceClient client, string type, int count, int maxRetries = 3)
    {
        var request = new EnqueueTasksRequest();
        request.Tasks.AddRange(Enumerable.Range(0, count).Select(i => new BatchTask { Task = Spec(type, $$"""{"i":{{i}}}""", maxRetries: maxRetries) }));
        return (await client.EnqueueTasksAsync(request)).Tasks.ToList();
    }

    private static async Task<List<V1.Task>> LeaseAllAsync(QueueService.QueueServiceClient client, string type, int count, bool start)
    {
        var request = new LeaseTasksRequest { WorkerId = "holder", MaxTasks = count, Start = start, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(5)) };
        request.TaskTypes.Add(type);
        var leased = (await client.LeaseTasksAsync(request)).Tasks.ToList();
        Assert.Equal(count, leased.Count);
        return leased;
    }

    private static async Task<StatusCode> CodeOf(Task call)
    {
        try
        {
            await call;
            return StatusCode.OK;
        }
        catch (RpcException ex)
        {
            return ex.StatusCode;
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_completions_of_two_tenants_with_stale_unknown_foreign_and_twin_calls_each_get_their_own_answer()
    {
        var type = NewType("group.complete");
        await EnqueueManyAsync(A, type, 80);
        await EnqueueManyAsync(B, type, 40);
        var a = await LeaseAllAsync(A, type, 80, start: true);
        var b = await LeaseAllAsync(B, type, 40, start: true);

        var calls = new List<(string What, Task<StatusCode> Call)>();
        void Add(string what, Func<Task> call) => calls.Add((what, Task.Run(() => CodeOf(call()))));
        foreach (var t in a)
        {
            Add("ok", () => A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken, Result = $$"""{"by":"{{t.Id}}"}""" }).ResponseAsync);
        }
        foreach (var t in a.Take(20))
        {
            Add("twin", () => A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync);
            Add("stale", () => A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken + 1, Result = """{"by":"stale"}""" }).ResponseAsync);
            Add("foreign", () => B.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken, Result = """{"by":"tenant-b"}""" }).ResponseAsync);
            Add("unknown", () => A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = Guid.NewGuid().ToString(), FencingToken = 1 }).ResponseAsync);
        }
        foreach (var t in b)
        {
            Add("ok", () => B.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync);
        }
        foreach (var (what, call) in calls)
        {
            var expected = what switch
            {
                "ok" or "twin" => StatusCode.OK,
                "stale" => StatusCode.FailedPrecondition,
                _ => StatusCode.NotFound,
            };
            Assert.True(expected == await call, $"{what}: expected {expected}, got {await call}");
        }

        Assert.Equal(120, await EventsAsync(type, "completed"));
        Assert.Equal(0L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE type = @type AND status <> 'completed'", ("type", type)));
        // Each A task kept the result of its own "ok" call or none (a twin may win): never another task's, a stale holder's or tenant B's.
        Assert.Equal(0L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE type = @type AND result IS NOT NULL AND result->>'by' <> id::text", ("type", type)));
        var transactions = await TransactionsAsync(type, "completed");
        Assert.True(transactions < 120, $"120 completions took {transactions} transactions: nothing was grouped");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_leases_across_types_and_tenants_hand_out_every_task_exactly_once()
    {
        var x = NewType("group.lease.x");
        var y = NewType("group.lease.y");
        await EnqueueManyAsync(A, x, 150);
        await EnqueueManyAsync(A, y, 150);
        await EnqueueManyAsync(B, x, 60);

        var leasedBy = new System.Collections.Concurrent.ConcurrentBag<(string Tenant, string Worker, V1.Task Task, int Max, string[] Types)>();
        var leaseCalls = 0;
        async Task WorkerAsync(QueueService.QueueServiceClient client, string tenant, string worker, string[] types, int max)
        {
            while (true)
            {
                var request = new LeaseTasksRequest { WorkerId = worker, MaxTasks = max, Start = worker.GetHashCode() % 2 == 0 };
                request.TaskTypes.AddRange(types);
                var tasks = (await client.LeaseTasksAsync(request)).Tasks;
                Interlocked.Increment(ref leaseCalls);
                if (tasks.Count == 0)
                {
                    return;
                }
                Assert.InRange(tasks.Count, 1, max);
                foreach (var t in tasks)
                {
                    leasedBy.Add((tenant, worker, t, max, types));
                }
            }
        }
        var workers = Enumerable.Range(0, 40).Select(i => i switch
        {
            < 12 => WorkerAsync(A, "tenant-a", $"a{i}", [x], 1 + i % 3),
            < 24 => WorkerAsync(A, "tenant-a", $"a{i}", [y], 1 + i % 5),
            < 32 => WorkerAsync(A, "tenant-a", $"a{i}", [x, y], 1 + i % 7),
            _ => WorkerAsync(B, "tenant-b", $"b{i}", [x, y], 1 + i % 2),
        }).Select(w => Task.Run(() => w));
        await Task.WhenAll(workers);

        var all = leasedBy.ToList();
        Assert.Equal(360, all.Count);
        Assert.Equal(360, all.Select(l => l.Task.Id).Distinct().Count());
        Assert.All(all, l => Assert.Contains(l.Task.Type, l.Types));
        Assert.All(all, l => Assert.Equal(l.Worker, l.Task.AssignedWorkerId));
        Assert.All(all, l => Assert.Equal(1, l.Task.FencingToken));
        Assert.Equal(60, all.Count(l => l.Tenant == "tenant-b"));
        Assert.Equal(60L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE tenant_id = 'tenant-b' AND type = @x AND assigned_worker_id LIKE 'b%'", ("x", x)));
        Assert.Equal(0L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE tenant_id = 'tenant-a' AND assigned_worker_id LIKE 'b%'"));
        Assert.Equal(360, await EventsAsync(x, "leased") + await EventsAsync(y, "leased"));
        var transactions = await TransactionsAsync(x, "leased") + await TransactionsAsync(y, "leased");
        Assert.True(transactions < all.Select(l => (l.Worker, l.Task.AssignedAt)).Distinct().Count(),
            $"{transactions} lease transactions for as many calls: nothing was grouped");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_single_enqueues_with_shared_idempotency_keys_create_one_task_per_tenant_and_key()
    {
        var type = NewType("group.enqueue");
        var calls = new List<(string Tenant, string? Key, Task<EnqueueTaskResponse> Call)>();
        foreach (var (client, tenant) in new[] { (A, "tenant-a"), (B, "tenant-b") })
        {
            for (var i = 0; i < 150; i++)
            {
                var key = i < 120 ? $"key-{i % 30}" : null;
                var spec = Spec(type, $$"""{"i":{{i}}}""", idempotencyKey: key);
                calls.Add((tenant, key, Task.Run(() => client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = spec }).ResponseAsync)));
            }
        }
        await Task.WhenAll(calls.Select(c => c.Call));

        foreach (var perKey in calls.Where(c => c.Key is not null).GroupBy(c => (c.Tenant, c.Key)))
        {
            var answers = perKey.Select(c => c.Call.Result).ToList();
            Assert.Single(answers, r => r.Created);
            Assert.Single(answers.Select(r => r.Task.Id).Distinct());
            Assert.All(answers, r => Assert.Equal(perKey.Key.Key, r.Task.IdempotencyKey));
        }
        Assert.All(calls.Where(c => c.Key is null), c => Assert.True(c.Call.Result.Created));
        Assert.Equal(2 * (30 + 30), await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type", ("type", type)));
        Assert.Equal(120, await EventsAsync(type, "enqueued"));
        var transactions = await TransactionsAsync(type, "enqueued");
        Assert.True(transactions < 120, $"120 enqueues took {transactions} transactions: nothing was grouped");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_failures_retry_then_dead_letter_each_task_once_and_twins_get_the_same_answer()
    {
        var type = NewType("group.fail");
        await EnqueueManyAsync(A, type, 60, maxRetries: 1);
        var first = await LeaseAllAsync(A, type, 60, start: true);
        var retryable = new Common.V1.ErrorDetail { Code = "FLAKY", Message = "try again", Retryable = true };

        var fails = first.Select(t => (t, Task.Run(() => A.FailTaskAsync(new FailTaskRequest
        {
            TaskId = t.Id, FencingToken = t.FencingToken, Error = retryable, RetryAfter = Duration.FromTimeSpan(TimeSpan.Zero),
        }).ResponseAsync))).ToList();
        var twins = first.Take(15).Select(t => Task.Run(() => A.FailTaskAsync(new FailTaskRequest
        {
            TaskId = t.Id, FencingToken = t.FencingToken, Error = retryable, RetryAfter = Duration.FromTimeSpan(TimeSpan.Zero),
        }).ResponseAsync)).ToList();
        var stale = first.Take(15).Select(t => Task.Run(() => CodeOf(A.FailTaskAsync(new FailTaskRequest
        {
            TaskId = t.Id, FencingToken = t.FencingToken + 5, Error = retryable,
        }).ResponseAsync))).ToList();

        foreach (var (_, call) in fails)
        {
            Assert.True((await call).WillRetry);
        }
        foreach (var twin in twins)
        {
            Assert.True((await twin).WillRetry);
        }
        Assert.All(await Task.WhenAll(stale), code => Assert.Equal(StatusCode.FailedPrecondition, code));
        Assert.Equal(60, await EventsAsync(type, "retry_scheduled"));

        var second = await LeaseAllAsync(A, type, 60, start: true);
        Assert.All(second, t => Assert.Equal(2, t.FencingToken));
        var ends = await Task.WhenAll(second.Select(t => Task.Run(() => A.FailTaskAsync(new FailTaskRequest
        {
            TaskId = t.Id, FencingToken = t.FencingToken, Error = retryable,
        }).ResponseAsync)));
        Assert.All(ends, e => Assert.False(e.WillRetry));
        Assert.All(ends, e => Assert.Equal(V1.TaskStatus.DeadLettered, e.Task.Status));
        Assert.Equal(60, await EventsAsync(type, "dead_lettered"));
        var transactions = await TransactionsAsync(type, "retry_scheduled");
        Assert.True(transactions < 60, $"60 failures took {transactions} transactions: nothing was grouped");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Parents_completed_together_release_each_of_their_dependents_exactly_once()
    {
        var parentType = NewType("group.parent");
        var childType = NewType("group.child");
        var batch = new EnqueueTasksRequest();
        for (var i = 0; i < 40; i++)
        {
            batch.Tasks.Add(new BatchTask { Key = $"p{i}", Task = Spec(parentType) });
            var child = new BatchTask { Key = $"c{i}", Task = Spec(childType) };
            child.DependsOn.Add(new BatchDependency { TaskKey = $"p{i}" });
            // every child also waits for its neighbour's parent: two parents ending in one group resolve one child twice
            child.DependsOn.Add(new BatchDependency { TaskKey = $"p{(i + 1) % 40}" });
            batch.Tasks.Add(child);
        }
        await A.EnqueueTasksAsync(batch);
        var parents = await LeaseAllAsync(A, parentType, 40, start: true);

        await Task.WhenAll(parents.Select(p => Task.Run(() =>
            A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = p.Id, FencingToken = p.FencingToken }).ResponseAsync)));

        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND unmet_dependencies <> 0", ("type", childType)));
        Assert.Equal(80L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_dependencies d JOIN tasks t ON t.id = d.task_id WHERE t.type = @type AND d.state = 'met'", ("type", childType)));
        var children = await LeaseAllAsync(A, childType, 40, start: false);
        Assert.Equal(40, children.Select(c => c.Id).Distinct().Count());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_starts_progress_and_extensions_with_twins_and_stale_tokens_apply_each_once()
    {
        var type = NewType("group.start");
        await EnqueueManyAsync(A, type, 50);
        var leased = await LeaseAllAsync(A, type, 50, start: false);

        var starts = leased.SelectMany(t => new[]
        {
            Task.Run(() => CodeOf(A.StartTaskAsync(new StartTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync)),
            Task.Run(() => CodeOf(A.StartTaskAsync(new StartTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync)),
        }).ToList();
        var staleStarts = leased.Select(t => Task.Run(() =>
            CodeOf(A.StartTaskAsync(new StartTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken + 1 }).ResponseAsync))).ToList();
        Assert.All(await Task.WhenAll(starts), c => Assert.Equal(StatusCode.OK, c));
        Assert.All(await Task.WhenAll(staleStarts), c => Assert.Equal(StatusCode.FailedPrecondition, c));
        Assert.Equal(50, await EventsAsync(type, "started"));

        var progress = await Task.WhenAll(leased.Select(t => Task.Run(() => A.ReportProgressAsync(new ReportProgressRequest
        {
            TaskId = t.Id, FencingToken = t.FencingToken, Percent = 40, Message = $"at {t.Id}", LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(20)),
        }).ResponseAsync)));
        Assert.All(progress.Zip(leased), p => Assert.Equal($"at {p.Second.Id}", p.First.Task.ProgressMessage));
        var extended = await Task.WhenAll(leased.Select(t => Task.Run(() => A.ExtendLeaseAsync(new ExtendLeaseRequest
        {
            TaskId = t.Id, FencingToken = t.FencingToken, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(30)),
        }).ResponseAsync)));
        Assert.All(extended, e => Assert.InRange(e.Task.LeaseExpiresAt.ToDateTime() - DateTime.UtcNow, TimeSpan.FromMinutes(29), TimeSpan.FromMinutes(31)));
        Assert.Equal(50, await EventsAsync(type, "progress"));
        Assert.Equal(50, await EventsAsync(type, "lease_extended"));
        Assert.Equal(50L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE type = @type AND status = 'running' AND progress_percent = 40 AND progress_message = 'at ' || id::text", ("type", type)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_starts_and_completions_of_assigned_tasks_write_each_task_a_history_that_chains()
    {
        // Each assigned task gets a start, a progress report and a completion at once (and twins of the start and the
        // completion): which lands first varies task by task. Whatever the order, each change's history names the state
        // the task really left (a completion of a task that was started left `running`, of one that was not, `assigned`),
        // so every task's events chain: each leaves the state the one before it entered, and the last one entered the
        // state the task is in.
        var type = NewType("group.chain");
        await EnqueueManyAsync(A, type, 60);
        var leased = await LeaseAllAsync(A, type, 60, start: false);

        var calls = leased.SelectMany(t => new Func<Task>[]
        {
            () => A.StartTaskAsync(new StartTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync,
            () => A.StartTaskAsync(new StartTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync,
            () => A.ReportProgressAsync(new ReportProgressRequest { TaskId = t.Id, FencingToken = t.FencingToken, Percent = 10 }).ResponseAsync,
            () => A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync,
            () => A.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync,
        }).Select(call => Task.Run(() => CodeOf(call()))).ToList();
        var codes = await Task.WhenAll(calls);
        // A start or progress report that came after the completion is refused (FAILED_PRECONDITION); nothing else is.
        Assert.All(codes, c => Assert.Contains(c, new[] { StatusCode.OK, StatusCode.FailedPrecondition }));
        Assert.Equal(0L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM tasks WHERE type = @type AND status <> 'completed'", ("type", type)));
        Assert.Equal(60, await EventsAsync(type, "completed"));

        // Every event after the lease leaves the state the previous one entered; the last enters the task's state.
        Assert.Equal(0L, await env.ScalarAsync<long>("""
            SELECT count(*) FROM (
                SELECT h.from_status, lag(h.to_status) OVER (PARTITION BY h.task_id ORDER BY h.id) AS before, h.event_type
                FROM task_history h WHERE h.task_type = @type) e
            WHERE e.event_type <> 'enqueued' AND e.from_status IS DISTINCT FROM e.before
            """, ("type", type)));
        Assert.Equal(0L, await env.ScalarAsync<long>("""
            SELECT count(*) FROM tasks t
            WHERE t.type = @type AND t.status IS DISTINCT FROM
                  (SELECT h.to_status FROM task_history h WHERE h.task_id = t.id ORDER BY h.id DESC LIMIT 1)
            """, ("type", type)));
        // A completion left `running` exactly when the task's start came first.
        var fromRunning = await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_history WHERE task_type = @type AND event_type = 'completed' AND from_status = 'running'", ("type", type));
        var started = await EventsAsync(type, "started");
        Assert.Equal(started, fromRunning);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Groups_on_three_instances_changing_the_same_tasks_in_opposite_orders_never_deadlock()
    {
        // Three instances send every call for the same 120 tasks, one in ascending order, one in descending, one
        // shuffled, so their groups overlap in every order: each call is answered, each task changes as the calls say
        // (every progress report kept in the history, one start, one completion), and nothing deadlocks. Every guarded
        // change locks its group's rows in id order whatever order its calls came in; a deadlock would be retried and
        // go unseen by the callers, but PostgreSQL counts it (pg_stat_database.deadlocks), and the count must not move.
        // What this cannot promise: with the sort removed from the statement, one run of it saw no deadlock either —
        // it catches deadlocks that happen here, and the sort itself is held by the plan (a nested loop over the
        // sorted calls; the Queue README).
        var type = NewType("group.order");
        await EnqueueManyAsync(A, type, 120);
        var leased = await LeaseAllAsync(A, type, 120, start: false);
        // Two more instances for this test alone (stopped when it ends, so the class's other tests keep one).
        await using var second = await QueueEnvironment.StartQueueAsync(env.DatabaseConnectionString, env.RedisConnectionString);
        await using var third = await QueueEnvironment.StartQueueAsync(env.DatabaseConnectionString, env.RedisConnectionString);
        var instances = new[] { env.Queue, second, third };
        var orders = new[]
        {
            leased.OrderBy(t => Guid.Parse(t.Id)).ToList(),
            leased.OrderByDescending(t => Guid.Parse(t.Id)).ToList(),
            leased.OrderBy(_ => Random.Shared.Next()).ToList(),
        };
        var deadlocksBefore = await SettledDeadlocksAsync();

        async Task EveryInstanceAsync(Func<QueueService.QueueServiceClient, V1.Task, Task> call) =>
            await Task.WhenAll(instances.Select((instance, k) => Task.Run(() =>
                Task.WhenAll(orders[k].Select(t => Task.Run(() => call(instance.Client("tenant-a"), t)))))));
        for (var round = 0; round < 3; round++)
        {
            await EveryInstanceAsync((client, t) => client.ReportProgressAsync(
                new ReportProgressRequest { TaskId = t.Id, FencingToken = t.FencingToken, Percent = 10 + round }).ResponseAsync);
            await EveryInstanceAsync((client, t) => client.ExtendLeaseAsync(new ExtendLeaseRequest
            {
                TaskId = t.Id, FencingToken = t.FencingToken, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(10)),
            }).ResponseAsync);
        }
        await EveryInstanceAsync((client, t) => client.StartTaskAsync(new StartTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync);
        await EveryInstanceAsync((client, t) => client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = t.Id, FencingToken = t.FencingToken }).ResponseAsync);

        Assert.Equal(120, await EventsAsync(type, "started"));
        Assert.Equal(120, await EventsAsync(type, "completed"));
        Assert.Equal(3 * 3 * 120, await EventsAsync(type, "progress"));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND status <> 'completed'", ("type", type)));
        Assert.Equal(deadlocksBefore, await SettledDeadlocksAsync());
    }

    // pg_stat_database's count as it settles: a backend reports its counters at most once a second (an idle one about a
    // second after its last transaction); looks until two readings 2.5 s apart agree.
    private async Task<long> SettledDeadlocksAsync()
    {
        const string Read = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()";
        long? last = null;
        for (var look = 0; look < 12; look++)
        {
            await Task.Delay(2500);
            var now = await env.ScalarAsync<long>(Read);
            if (now == last)
            {
                return now;
            }
            last = now;
        }
        Assert.Fail($"pg_stat_database.deadlocks did not settle within 30 s (last {last})");
        return 0;
    }
}

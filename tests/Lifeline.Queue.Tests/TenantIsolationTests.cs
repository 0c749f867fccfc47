using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// Every call acts for the tenant its verified identity names: another tenant's tasks are
/// invisible (NOT_FOUND, absent from listings, never leased) and untouched in the store.
/// </summary>
public sealed class TenantIsolationTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Acme => env.Queue.Client("acme");
    private QueueService.QueueServiceClient Globex => env.Queue.Client("globex");

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_task_is_not_found_and_stays_untouched()
    {
        var type = NewType("tenant.get");
        var task = await Acme.EnqueueAsync(Spec(type));
        Assert.Equal("acme", task.TenantId);
        Assert.Equal("acme", await env.ScalarAsync<string>("SELECT tenant_id FROM tasks WHERE id = @id", ("id", Guid.Parse(task.Id))));
        var row = await RowAsync(task.Id);

        await AssertNotFound(() => Globex.GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync, task.Id);
        await AssertNotFound(() => Globex.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id, Reason = "hostile" }).ResponseAsync, task.Id);
        await AssertNotFound(() => Globex.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id }).ResponseAsync, task.Id);
        await AssertNotFound(() => Globex.AddDependencyAsync(new AddDependencyRequest
        {
            TaskId = task.Id, DependsOnTaskId = Guid.NewGuid().ToString(),
        }).ResponseAsync, task.Id);

        Assert.Equal(row, await RowAsync(task.Id));
        Assert.Equal(1L, await HistoryCountAsync(task.Id)); // just "enqueued"
        Assert.Equal(task.Id, (await Acme.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task ListActiveTenants_names_every_tenant_with_unfinished_tasks_whatever_tenant_asks()
    {
        var type = NewType("tenant.active");
        var busy = $"busy-{Guid.NewGuid():N}"[..20];
        var done = $"done-{Guid.NewGuid():N}"[..20];
        await env.Queue.Client(busy).EnqueueAsync(Spec(type));
        var finished = env.Queue.Client(done);
        await finished.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await finished.LeaseAsync("w1", type));
        await finished.CompleteTaskAsync(new CompleteTaskRequest { TaskId = leased.Id, FencingToken = leased.FencingToken });

        var tenants = (await env.Queue.Client("someone-else").ListActiveTenantsAsync(new ListActiveTenantsRequest())).Tenants.ToList();

        Assert.Contains(busy, tenants);
        Assert.DoesNotContain(done, tenants);
        Assert.DoesNotContain("someone-else", tenants);
        Assert.Equal(tenants.Distinct().Order(StringComparer.Ordinal), tenants);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_lease_holders_calls_from_another_tenant_are_not_found()
    {
        var type = NewType("tenant.holder");
        var task = await Acme.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Acme.LeaseAsync("acme-worker", type, leaseSeconds: 300));
        var row = await RowAsync(task.Id);

        await AssertNotFound(() => Globex.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken }).ResponseAsync, task.Id);
        await AssertNotFound(() => Globex.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken }).ResponseAsync, task.Id);
        await AssertNotFound(() => Globex.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id }).ResponseAsync, task.Id);

        var batch = new CompleteTasksRequest();
        batch.Completions.Add(new TaskCompletion { TaskId = task.Id, FencingToken = leased.FencingToken });
        var result = Assert.Single((await Globex.CompleteTasksAsync(batch)).Results);
        Assert.False(result.Accepted);
        Assert.Equal((int)StatusCode.NotFound, result.Code);
        Assert.Equal("TASK_NOT_FOUND", result.Reason);

        Assert.Equal(row, await RowAsync(task.Id));
        Assert.Equal("assigned", await env.StatusAsync(task.Id));
        await Acme.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        Assert.Equal("completed", await env.StatusAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Listings_and_stats_show_only_the_callers_tasks()
    {
        var type = NewType("tenant.list");
        var acmeTasks = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            acmeTasks.Add((await Acme.EnqueueAsync(Spec(type))).Id);
        }
        var globexTask = await Globex.EnqueueAsync(Spec(type));

        var globexList = (await Globex.ListTasksAsync(new ListTasksRequest { Type = type })).Tasks;
        Assert.Equal([globexTask.Id], globexList.Select(t => t.Id));
        var globexAll = (await Globex.ListTasksAsync(new ListTasksRequest { PageSize = 1000 })).Tasks;
        Assert.DoesNotContain(globexAll, t => acmeTasks.Contains(t.Id));
        Assert.All(globexAll, t => Assert.Equal("globex", t.TenantId));

        var acmeList = (await Acme.ListTasksAsync(new ListTasksRequest { Type = type })).Tasks;
        Assert.Equal(acmeTasks.AsEnumerable().Reverse(), acmeList.Select(t => t.Id)); // newest first

        var stats = await Globex.GetQueueStatsAsync(new GetQueueStatsRequest { Type = type });
        Assert.Equal(1L, Assert.Single(stats.Counts).Count);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_of_another_tenant_leases_nothing_of_the_same_type()
    {
        var type = NewType("tenant.lease");
        var task = await Acme.EnqueueAsync(Spec(type));

        Assert.Empty(await Globex.LeaseAsync("globex-worker", type, max: 10, waitSeconds: 1));
        Assert.Equal("pending", await env.StatusAsync(task.Id));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT fencing_token FROM tasks WHERE id = @id", ("id", Guid.Parse(task.Id))));
        Assert.Equal(1L, await HistoryCountAsync(task.Id));

        var leased = Assert.Single(await Acme.LeaseAsync("acme-worker", type));
        Assert.Equal(task.Id, leased.Id);
        await Acme.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_same_idempotency_key_in_two_tenants_makes_two_tasks()
    {
        var type = NewType("tenant.idem");
        var acme = await Acme.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, idempotencyKey: "order-1") });
        var globex = await Globex.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, idempotencyKey: "order-1") });

        Assert.True(acme.Created);
        Assert.True(globex.Created);
        Assert.NotEqual(acme.Task.Id, globex.Task.Id);
        Assert.Equal(2L, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type", ("type", type)));
    }

    private static async Task AssertNotFound<T>(Func<Task<T>> call, string id)
    {
        var status = await RefusedAsync(call, StatusCode.NotFound);
        Assert.Equal("TASK_NOT_FOUND", status.ErrorInfo().Reason);
        Assert.Equal("lifeline", status.ErrorInfo().Domain);
        Assert.Equal(id, status.ErrorInfo().Metadata["resource_id"]);
    }

    private Task<string> RowAsync(string id) =>
        env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(id)));

    private Task<long> HistoryCountAsync(string id) =>
        env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id", ("id", Guid.Parse(id)));
}

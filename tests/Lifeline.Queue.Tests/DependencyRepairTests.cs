using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>FindDependencyCycles and RemoveDependency: finding and repairing cycles that got past the checks at insert.</summary>
public sealed class DependencyRepairTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient TenantClient(string tenant) => env.Queue.Client(tenant);

    /// <summary>Plants "<paramref name="task"/> waits for <paramref name="dependsOn"/>" in the store, as a restore or a manual change could.</summary>
    private Task PlantEdgeAsync(string tenant, string task, string dependsOn) => env.ScalarAsync<int>("""
        WITH edge AS (
            INSERT INTO task_dependencies (task_id, depends_on_id, tenant_id, type, state, created_at)
            VALUES (@task, @on, @tenant, 'success', 'waiting', clock_timestamp())
        ), target AS (UPDATE tasks SET has_dependents = true WHERE id = @on)
        UPDATE tasks SET unmet_dependencies = unmet_dependencies + 1 WHERE id = @task RETURNING 1
        """, ("task", Guid.Parse(task)), ("on", Guid.Parse(dependsOn)), ("tenant", tenant));

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_planted_cycle_is_found_and_removing_its_newest_edge_releases_the_task()
    {
        const string tenant = "cycles";
        var client = TenantClient(tenant);
        var type = NewType("cycle");
        var a = await client.EnqueueAsync(Spec(type));
        var b = await client.EnqueueAsync(Spec(type));
        await client.AddDependencyAsync(new AddDependencyRequest { TaskId = a.Id, DependsOnTaskId = b.Id });
        await PlantEdgeAsync(tenant, b.Id, a.Id);

        var found = await client.FindDependencyCyclesAsync(new FindDependencyCyclesRequest());

        var cycle = Assert.Single(found.Cycles);
        var ordered = new[] { a.Id, b.Id }.OrderBy(Guid.Parse).ToArray();
        Assert.Equal(ordered, cycle.TaskIds);
        Assert.Equal(2, cycle.Edges.Count);
        Assert.Contains(cycle.Edges, e => e.TaskId == b.Id && e.DependsOnTaskId == a.Id);
        Assert.Empty((await TenantClient("cycles-other").FindDependencyCyclesAsync(new FindDependencyCyclesRequest())).Cycles);

        var removed = await client.RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = b.Id, DependsOnTaskId = a.Id });

        Assert.Equal("waiting", removed.RemovedState);
        Assert.Equal(0, removed.Task.UnmetDependencies);
        Assert.Equal(0, await env.ScalarAsync<int>("SELECT unmet_dependencies FROM tasks WHERE id = @id", ("id", Guid.Parse(b.Id))));
        Assert.Equal(1, await env.ScalarAsync<int>("SELECT unmet_dependencies FROM tasks WHERE id = @id", ("id", Guid.Parse(a.Id))));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM task_dependencies WHERE task_id = @id", ("id", Guid.Parse(b.Id))));
        var history = (await client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = b.Id })).Events.Select(e => e.EventType).ToList();
        Assert.Contains("dependency_removed", history);
        Assert.Contains("dependencies_met", history);
        Assert.Empty((await client.FindDependencyCyclesAsync(new FindDependencyCyclesRequest())).Cycles);

        // Released: b is leased now; a still waits for b.
        var leased = Assert.Single(await client.LeaseAsync("w", type, max: 2, waitSeconds: 2));
        Assert.Equal(b.Id, leased.Id);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task One_cycle_is_reported_per_group_and_a_longer_ring_in_order()
    {
        const string tenant = "cycles-ring";
        var client = TenantClient(tenant);
        var type = NewType("ring");
        var tasks = new List<V1.Task>();
        for (var i = 0; i < 3; i++)
        {
            tasks.Add(await client.EnqueueAsync(Spec(type)));
        }
        await PlantEdgeAsync(tenant, tasks[0].Id, tasks[1].Id);
        await PlantEdgeAsync(tenant, tasks[1].Id, tasks[2].Id);
        await PlantEdgeAsync(tenant, tasks[2].Id, tasks[0].Id);

        var cycle = Assert.Single((await client.FindDependencyCyclesAsync(new FindDependencyCyclesRequest())).Cycles);

        Assert.Equal(3, cycle.TaskIds.Count);
        for (var i = 0; i < 3; i++)
        {
            // each waits for the next, the last for the first
            Assert.Equal(cycle.TaskIds[i], cycle.Edges[i].TaskId);
            Assert.Equal(cycle.TaskIds[(i + 1) % 3], cycle.Edges[i].DependsOnTaskId);
        }
        Assert.Equal(cycle.TaskIds.Min(StringComparer.Ordinal), cycle.TaskIds[0]);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task RemoveDependency_refuses_bad_input_and_unknown_edges()
    {
        var client = TenantClient("cycles-bad");
        var bad = await RefusedAsync(() => client.RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = "x" }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["task_id", "depends_on_task_id"], bad.BadRequest().FieldViolations.Select(f => f.Field));
        var same = Guid.NewGuid().ToString();
        var self = await RefusedAsync(() => client.RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = same, DependsOnTaskId = same }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal("depends_on_task_id", Assert.Single(self.BadRequest().FieldViolations).Field);

        var type = NewType("nodep");
        var a = await client.EnqueueAsync(Spec(type));
        var b = await client.EnqueueAsync(Spec(type));
        var missing = await RefusedAsync(() => client.RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = a.Id, DependsOnTaskId = b.Id }).ResponseAsync,
            StatusCode.NotFound);
        Assert.Equal("DEPENDENCY_NOT_FOUND", missing.ErrorInfo().Reason);

        // Another tenant's edge is not found either, and stays.
        await client.AddDependencyAsync(new AddDependencyRequest { TaskId = a.Id, DependsOnTaskId = b.Id });
        await RefusedAsync(() => TenantClient("cycles-bad-other").RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = a.Id, DependsOnTaskId = b.Id })
            .ResponseAsync, StatusCode.NotFound);
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_dependencies WHERE task_id = @id", ("id", Guid.Parse(a.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task RemoveDependency_racing_the_completion_of_the_dependency_lowers_the_count_exactly_once()
    {
        const string tenant = "cycles-race";
        var client = TenantClient(tenant);
        for (var round = 0; round < 15; round++)
        {
            var firstType = NewType("race.first");
            var secondType = NewType("race.second");
            var first = await client.EnqueueAsync(Spec(firstType));
            var second = await client.EnqueueAsync(Spec(secondType));
            var dependent = await client.EnqueueAsync(Spec(NewType("race.dependent")));
            await client.AddDependencyAsync(new AddDependencyRequest { TaskId = dependent.Id, DependsOnTaskId = first.Id });
            await client.AddDependencyAsync(new AddDependencyRequest { TaskId = dependent.Id, DependsOnTaskId = second.Id });
            var leased = Assert.Single(await client.LeaseAsync("w", firstType, waitSeconds: 2));

            var complete = client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = leased.Id, FencingToken = leased.FencingToken }).ResponseAsync;
            var remove = client.RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = dependent.Id, DependsOnTaskId = first.Id }).ResponseAsync;
            await Task.WhenAll(complete, remove);

            Assert.Contains((await remove).RemovedState, new[] { "waiting", "met" });
            // Still waiting for the second dependency: lowered once, by whichever came first.
            Assert.Equal(1, await env.ScalarAsync<int>("SELECT unmet_dependencies FROM tasks WHERE id = @id", ("id", Guid.Parse(dependent.Id))));
            Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_dependencies WHERE task_id = @id", ("id", Guid.Parse(dependent.Id))));
        }
    }
}

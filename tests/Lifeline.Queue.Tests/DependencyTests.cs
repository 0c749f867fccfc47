using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

public sealed class DependencyTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static BatchTask Node(string key, string type, params (string Key, DependencyType Type)[] dependsOn)
    {
        var node = new BatchTask { Key = key, Task = Spec(type) };
        node.DependsOn.AddRange(dependsOn.Select(d => new BatchDependency { TaskKey = d.Key, Type = d.Type }));
        return node;
    }

    private async Task<V1.Task> LeaseAndCompleteAsync(string type)
    {
        var leased = Assert.Single(await Client.LeaseAsync("w", type, waitSeconds: 5));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = leased.Id, FencingToken = leased.FencingToken });
        return leased;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dependent_is_not_leased_until_its_dependency_completes()
    {
        var parentType = NewType("dag.parent");
        var childType = NewType("dag.child");
        var response = await Client.EnqueueTasksAsync(new EnqueueTasksRequest
        {
            Tasks = { Node("parent", parentType), Node("child", childType, ("parent", DependencyType.Success)) },
        });
        var child = response.Tasks[1];
        Assert.Equal(1, child.UnmetDependencies);
        Assert.Empty(await Client.LeaseAsync("w", childType));

        await LeaseAndCompleteAsync(parentType);

        var leased = Assert.Single(await Client.LeaseAsync("w", childType, waitSeconds: 5));
        Assert.Equal(child.Id, leased.Id);
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM task_history WHERE task_id = @id AND event_type = 'dependencies_met'", ("id", Guid.Parse(child.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_failed_dependency_cancels_success_dependents_transitively_and_names_the_dependency()
    {
        var a = NewType("dag.a");
        var rest = NewType("dag.rest");
        var response = await Client.EnqueueTasksAsync(new EnqueueTasksRequest
        {
            Tasks =
            {
                Node("a", a),
                Node("b", rest, ("a", DependencyType.Success)),
                Node("c", rest, ("b", DependencyType.Success)),
                Node("cleanup", rest, ("a", DependencyType.Failure)),
                Node("audit", rest, ("a", DependencyType.Completion)),
            },
        });
        var ids = response.Tasks.Select(t => t.Id).ToArray();
        var leased = Assert.Single(await Client.LeaseAsync("w", a));
        await Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = leased.Id, FencingToken = leased.FencingToken, Error = new ErrorDetail { Code = "BROKEN", Retryable = false },
        });

        Assert.Equal("cancelled", await env.StatusAsync(ids[1]));
        Assert.Equal("cancelled", await env.StatusAsync(ids[2]));
        var b = (await Client.GetTaskAsync(new GetTaskRequest { TaskId = ids[1] })).Task;
        Assert.Equal("DEPENDENCY_UNSATISFIED", b.Error.Code);
        Assert.Contains(ids[0], b.Error.Message);
        Assert.Contains(ids[1], (await Client.GetTaskAsync(new GetTaskRequest { TaskId = ids[2] })).Task.Error.Message);

        // The failure-type and completion-type dependents are now ready.
        var ready = await Client.LeaseAsync("w", rest, max: 10);
        Assert.Equal(new[] { ids[3], ids[4] }.Order(), ready.Select(t => t.Id).Order());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_cycle_in_a_batch_is_refused_naming_it_and_nothing_is_written()
    {
        var type = NewType("dag.cycle");
        var before = await env.CountRowsAsync();
        var status = await RefusedAsync(() => Client.EnqueueTasksAsync(new EnqueueTasksRequest
        {
            Tasks =
            {
                Node("x", type, ("z", DependencyType.Success)),
                Node("y", type, ("x", DependencyType.Success)),
                Node("z", type, ("y", DependencyType.Success)),
                Node("free", type),
            },
        }).ResponseAsync, StatusCode.FailedPrecondition);

        Assert.Equal("DEPENDENCY_CYCLE", status.ErrorInfo().Reason);
        foreach (var key in new[] { "x", "y", "z" })
        {
            Assert.Contains(key, status.Message);
        }
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task AddDependency_refuses_self_dependencies_and_cycles()
    {
        var type = NewType("dag.add");
        var first = await Client.EnqueueAsync(Spec(type));
        var second = await Client.EnqueueAsync(Spec(type));
        var third = await Client.EnqueueAsync(Spec(type));

        var self = await RefusedAsync(() => Client.AddDependencyAsync(new AddDependencyRequest { TaskId = first.Id, DependsOnTaskId = first.Id }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Contains(self.BadRequest().FieldViolations, v => v.Field == "depends_on_task_id");

        await Client.AddDependencyAsync(new AddDependencyRequest { TaskId = second.Id, DependsOnTaskId = first.Id });
        await Client.AddDependencyAsync(new AddDependencyRequest { TaskId = third.Id, DependsOnTaskId = second.Id });
        var before = await env.CountRowsAsync();
        var cycle = await RefusedAsync(() => Client.AddDependencyAsync(new AddDependencyRequest { TaskId = first.Id, DependsOnTaskId = third.Id }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("DEPENDENCY_CYCLE", cycle.ErrorInfo().Reason);
        Assert.Contains(first.Id, cycle.Message);
        Assert.Contains(second.Id, cycle.Message);
        Assert.Contains(third.Id, cycle.Message);
        Assert.Equal(before, await env.CountRowsAsync());

        // Only the head of the chain is leasable.
        var leasable = await Client.LeaseAsync("w", type, max: 10);
        Assert.Equal([first.Id], leasable.Select(t => t.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_opposite_AddDependency_calls_never_create_a_cycle()
    {
        for (var round = 0; round < 10; round++)
        {
            var type = NewType("dag.race");
            var a = await Client.EnqueueAsync(Spec(type));
            var b = await Client.EnqueueAsync(Spec(type));
            async Task<bool> Add(string task, string on)
            {
                try
                {
                    await Client.AddDependencyAsync(new AddDependencyRequest { TaskId = task, DependsOnTaskId = on });
                    return true;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition)
                {
                    return false;
                }
            }
            var results = await Task.WhenAll(Add(a.Id, b.Id), Add(b.Id, a.Id));
            Assert.Equal(1, results.Count(r => r));
            Assert.Equal(1, await env.ScalarAsync<long>(
                "SELECT count(*) FROM task_dependencies WHERE task_id = ANY(@ids)", ("ids", new[] { Guid.Parse(a.Id), Guid.Parse(b.Id) })));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dependency_that_completes_while_the_edge_is_added_is_never_missed()
    {
        for (var round = 0; round < 10; round++)
        {
            var type = NewType("dag.edge");
            var waiterType = NewType("dag.waiter");
            var dependency = await Client.EnqueueAsync(Spec(type));
            var waiter = await Client.EnqueueAsync(Spec(waiterType));
            var leased = Assert.Single(await Client.LeaseAsync("w", type));
            await Task.WhenAll(
                Client.AddDependencyAsync(new AddDependencyRequest { TaskId = waiter.Id, DependsOnTaskId = dependency.Id }).ResponseAsync,
                Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = dependency.Id, FencingToken = leased.FencingToken }).ResponseAsync);
            // Whichever order they committed in, the waiter must end up ready.
            Assert.Equal(0, await env.ScalarAsync<int>("SELECT unmet_dependencies FROM tasks WHERE id = @id", ("id", Guid.Parse(waiter.Id))));
            Assert.Single(await Client.LeaseAsync("w", waiterType));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_dag_of_1000_tasks_is_submitted_atomically_and_runs_in_dependency_order()
    {
        var type = NewType("dag.big");
        const int layers = 10, width = 100;
        var request = new EnqueueTasksRequest();
        for (var layer = 0; layer < layers; layer++)
        {
            for (var i = 0; i < width; i++)
            {
                var node = new BatchTask { Key = $"{layer}:{i}", Task = Spec(type, $$"""{"layer":{{layer}}}""") };
                if (layer > 0)
                {
                    // each node waits for two nodes of the previous layer
                    node.DependsOn.Add(new BatchDependency { TaskKey = $"{layer - 1}:{i}" });
                    node.DependsOn.Add(new BatchDependency { TaskKey = $"{layer - 1}:{(i + 1) % width}" });
                }
                request.Tasks.Add(node);
            }
        }
        var response = await Client.EnqueueTasksAsync(request);
        Assert.Equal(layers * width, response.CreatedCount);
        Assert.Equal(2 * (layers - 1) * width, await env.ScalarAsync<long>(
            "SELECT count(*) FROM task_dependencies d JOIN tasks t ON t.id = d.task_id WHERE t.type = @t", ("t", type)));

        var layerOf = response.Tasks.ToDictionary(t => t.Id, t => int.Parse(t.Payload.Split(':')[1].TrimEnd('}', ' ')));
        var completedLayers = new List<int>();
        while (completedLayers.Count < layers * width)
        {
            var leased = await Client.LeaseAsync("w", type, max: 500, waitSeconds: 5);
            Assert.NotEmpty(leased);
            // everything leased together belongs to one layer: the next cannot be ready before this one completes
            Assert.Single(leased.Select(t => layerOf[t.Id]).Distinct());
            var complete = new CompleteTasksRequest();
            complete.Completions.AddRange(leased.Select(t => new TaskCompletion { TaskId = t.Id, FencingToken = t.FencingToken }));
            Assert.Equal(leased.Count, (await Client.CompleteTasksAsync(complete)).AcceptedCount);
            completedLayers.AddRange(leased.Select(t => layerOf[t.Id]));
        }
        Assert.Equal(completedLayers.Order(), completedLayers);
    }
}

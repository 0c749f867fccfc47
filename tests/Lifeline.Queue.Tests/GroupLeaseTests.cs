using Lifeline.Queue.Data;
using Lifeline.Queue.Leasing;
using Lifeline.Queue.V1;
using Npgsql;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A group of lease requests that all want the same tenant and types is leased by one statement that fills the slots in
/// SQL (<see cref="TaskLeaser.GroupLease.LockAndLease"/>); other groups are chosen by the service from the locked
/// candidates. Both must give each request exactly what the dequeue order promises: the requests, in arrival order, take
/// the best ready tasks (priority, then age, then id), each as many as it asked for. These tests generate groups and
/// backlogs (ties of priority and of creation time included) and check both ways against that rule.
/// </summary>
public sealed class GroupLeaseTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private sealed record Ready(Guid Id, int Priority, DateTime CreatedAt);

    /// <summary>Enqueues a generated backlog over the types (batches share a creation time: ties broken by id).</summary>
    private async Task EnqueueBacklogAsync(Random random, string[] types, int count)
    {
        var batch = new EnqueueTasksRequest();
        for (var i = 0; i < count; i++)
        {
            batch.Tasks.Add(new BatchTask { Task = Spec(types[random.Next(types.Length)], priority: random.Next(3)) });
            if (batch.Tasks.Count == 4 || i == count - 1)
            {
                await Client.EnqueueTasksAsync(batch);
                batch = new EnqueueTasksRequest();
            }
        }
    }

    /// <summary>The ready tasks of the types, in dequeue order, as the database has them.</summary>
    private async Task<List<Ready>> ReadyInOrderAsync(string[] types)
    {
        await using var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var read = new NpgsqlCommand(
            "SELECT id, priority, created_at FROM tasks WHERE type = ANY(@types) AND status = 'pending' ORDER BY priority DESC, created_at, id", connection);
        read.Parameters.AddWithValue("types", types);
        var ready = new List<Ready>();
        await using var reader = await read.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            ready.Add(new Ready(reader.GetGuid(0), reader.GetInt32(1), reader.GetDateTime(2)));
        }
        return ready;
    }

    /// <summary>What the rule gives each request: the next best tasks, as many as it asked for, in arrival order.</summary>
    private static List<Guid[]> Expected(List<Ready> ready, IReadOnlyList<(string Tenant, LeaseRequest Request)> group)
    {
        var next = 0;
        return group.Select(g =>
        {
            var mine = ready.Skip(next).Take(g.Request.MaxTasks).Select(t => t.Id).ToArray();
            next += mine.Length;
            return mine;
        }).ToList();
    }

    private static void AssertLeasedAsAsked(IReadOnlyList<(string Tenant, LeaseRequest Request)> group, IReadOnlyList<IReadOnlyList<TaskRecord>> leased,
        List<Guid[]> expected, string way)
    {
        Assert.Equal(group.Count, leased.Count);
        for (var r = 0; r < group.Count; r++)
        {
            Assert.True(expected[r].SequenceEqual(leased[r].Select(t => t.Id)), $"{way}: request {r} got [{string.Join(", ", leased[r].Select(t => t.Id))}], " +
                $"the rule gives [{string.Join(", ", expected[r])}]");
            foreach (var task in leased[r])
            {
                var request = group[r].Request;
                Assert.Equal(request.WorkerId, task.AssignedWorkerId);
                Assert.Equal(request.Start ? "running" : "assigned", task.Status);
                Assert.Equal(1, task.FencingToken);
            }
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Both_ways_of_leasing_a_group_give_each_request_the_best_tasks_in_arrival_order()
    {
        var random = new Random(20261207);
        for (var round = 0; round < 16; round++)
        {
            var types = Enumerable.Range(0, 1 + round % 3).Select(t => NewType($"group.{round}.{t}")).ToArray();
            await EnqueueBacklogAsync(random, types, random.Next(0, 24));
            // Requests for all the types (listed in any order, one of them twice): each wants 1–4 tasks.
            var group = Enumerable.Range(0, 1 + random.Next(6)).Select(r => ("default", new LeaseRequest($"w-{round}-{r}",
                [.. types.OrderBy(_ => random.Next()), types[0]], 1 + random.Next(4), TimeSpan.FromSeconds(30), TimeSpan.Zero, Start: random.Next(2) == 0)))
                .ToList();
            var expected = Expected(await ReadyInOrderAsync(types), group);
            var lease = new TaskLeaser.GroupLease(group);
            Assert.True(lease.ChoosesInSql);

            // In SQL, in a transaction rolled back afterwards.
            await using (var connection = new NpgsqlConnection(env.DatabaseConnectionString))
            {
                await connection.OpenAsync();
                await using var tx = await connection.BeginTransactionAsync();
                await using var batch = TaskLeaser.Batch(connection, tx, lease.LockAndLease());
                await using var reader = await batch.ExecuteReaderAsync();
                AssertLeasedAsAsked(group, await lease.ReadLeasedAsync(reader, CancellationToken.None), expected, $"round {round}, in SQL");
            }
            // Chosen by the service, committed.
            await using (var connection = new NpgsqlConnection(env.DatabaseConnectionString))
            {
                await connection.OpenAsync();
                await using var tx = await connection.BeginTransactionAsync();
                await lease.LockAsync(connection, tx, CancellationToken.None);
                AssertLeasedAsAsked(group, await lease.LeaseAndCommitAsync(connection, tx, CancellationToken.None), expected, $"round {round}, by the service");
            }
            Assert.Equal(expected.Sum(e => e.Length), await env.ScalarAsync<long>(
                "SELECT count(*) FROM task_history WHERE event_type = 'leased' AND task_type = ANY(@types)", ("types", types)));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_group_whose_requests_want_different_types_or_tenants_is_chosen_by_the_service()
    {
        var (a, b) = (NewType("group.mixed.a"), NewType("group.mixed.b"));
        await Client.EnqueueAsync(Spec(a, priority: 1));
        await Client.EnqueueAsync(Spec(b, priority: 2));
        var request = new LeaseRequest("w-mixed", [a], 1, TimeSpan.FromSeconds(30), TimeSpan.Zero);
        var mixed = new TaskLeaser.GroupLease([("default", request), ("default", request with { WorkerId = "w-mixed-b", TaskTypes = [a, b] })]);
        Assert.False(mixed.ChoosesInSql);
        Assert.False(new TaskLeaser.GroupLease([("default", request), ("other", request)]).ChoosesInSql);
        Assert.Throws<InvalidOperationException>(() => mixed.LockAndLease());

        await using var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await mixed.LockAsync(connection, tx, CancellationToken.None);
        var leased = await mixed.LeaseAndCommitAsync(connection, tx, CancellationToken.None);
        // The first request takes the only task of its type; the second, wanting both, the task of b.
        Assert.Equal(a, Assert.Single(leased[0]).Type);
        Assert.Equal(b, Assert.Single(leased[1]).Type);
    }
}

using Lifeline.Queue.Data;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Npgsql;

namespace Lifeline.Queue.Dependencies;

/// <summary>One unresolved dependency edge: <see cref="TaskId"/> waits for <see cref="DependsOnId"/>.</summary>
public sealed record DependencyEdgeRecord(Guid TaskId, Guid DependsOnId, string Type, DateTime CreatedAt);

/// <summary>Tasks that wait for each other in a ring, in order, with the edges between them.</summary>
public sealed record DependencyCycleRecord(IReadOnlyList<Guid> TaskIds, IReadOnlyList<DependencyEdgeRecord> Edges);

/// <summary>
/// Operator repairs of the dependency graph: finding cycles that got into the store despite the checks at
/// insert (a restore, a manual change), and removing an edge. Both take the tenant's graph lock that
/// AddDependency takes, so they see and change a graph no concurrent addition is changing.
/// </summary>
public sealed class DependencyRepair(NpgsqlDataSource dataSource, ReadySignal readySignal)
{
    public const int MaxCycles = 1000;

    private const string GraphLockSql = "SELECT pg_advisory_xact_lock(hashtextextended('lifeline.queue.dependencies:' || @tenant, 0))";

    /// <summary>
    /// One cycle per strongly connected group of waiting edges (removing an edge of it and asking again finds
    /// any other ring in the group), each starting at its smallest task id. Linear in the waiting edges.
    /// </summary>
    public async Task<IReadOnlyList<DependencyCycleRecord>> FindCyclesAsync(string tenant, CancellationToken ct)
    {
        var edges = new List<DependencyEdgeRecord>();
        await using (var command = dataSource.CreateCommand("""
            SELECT task_id, depends_on_id, type, created_at FROM task_dependencies
            WHERE tenant_id = @tenant AND state = 'waiting'
            """))
        {
            command.Parameters.AddWithValue("tenant", tenant);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                edges.Add(new DependencyEdgeRecord(reader.GetGuid(0), reader.GetGuid(1), reader.GetString(2), reader.GetDateTime(3)));
            }
        }
        return FindCycles(edges);
    }

    /// <summary>The cycles of a graph given by its edges (pure; see <see cref="FindCyclesAsync"/>).</summary>
    public static IReadOnlyList<DependencyCycleRecord> FindCycles(IReadOnlyList<DependencyEdgeRecord> edges)
    {
        var index = new Dictionary<Guid, int>();
        var ids = new List<Guid>();
        int Node(Guid id)
        {
            if (!index.TryGetValue(id, out var n))
            {
                n = ids.Count;
                index[id] = n;
                ids.Add(id);
            }
            return n;
        }
        var numbered = edges.Select(e => (From: Node(e.TaskId), To: Node(e.DependsOnId), Edge: e)).ToList();
        var components = StronglyConnectedComponents(ids.Count, numbered.Select(e => (e.From, e.To)).ToList());
        var cycles = new List<DependencyCycleRecord>();
        foreach (var component in components.Where(c => c.Count > 1))
        {
            // Number the group's nodes from its smallest id, so the reported ring starts there.
            var members = component.OrderBy(n => ids[n]).ToList();
            var local = members.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i);
            var inner = numbered.Where(e => local.ContainsKey(e.From) && local.ContainsKey(e.To)).ToList();
            var ring = DependencyGraph.FindCycle(members.Count, inner.Select(e => (local[e.From], local[e.To])).ToList());
            if (ring is null)
            {
                continue;
            }
            var taskIds = ring.Take(ring.Count - 1).Select(i => ids[members[i]]).ToList();
            var start = taskIds.IndexOf(taskIds.Min());
            taskIds = [.. taskIds.Skip(start), .. taskIds.Take(start)];
            var ringEdges = taskIds.Select((id, i) => inner.First(e => ids[e.From] == id && ids[e.To] == taskIds[(i + 1) % taskIds.Count]).Edge).ToList();
            cycles.Add(new DependencyCycleRecord(taskIds, ringEdges));
            if (cycles.Count == MaxCycles)
            {
                break;
            }
        }
        return cycles.OrderBy(c => c.TaskIds[0]).ToList();
    }

    // Tarjan's algorithm, iterative (deep graphs need no recursion).
    private static List<List<int>> StronglyConnectedComponents(int nodeCount, IReadOnlyList<(int From, int To)> edges)
    {
        var adjacency = new List<int>[nodeCount];
        foreach (var (from, to) in edges)
        {
            (adjacency[from] ??= []).Add(to);
        }
        var order = new int[nodeCount];
        var low = new int[nodeCount];
        var onStack = new bool[nodeCount];
        var nextEdge = new int[nodeCount];
        Array.Fill(order, -1);
        var stack = new Stack<int>();
        var calls = new Stack<int>();
        var counter = 0;
        var components = new List<List<int>>();
        for (var root = 0; root < nodeCount; root++)
        {
            if (order[root] >= 0)
            {
                continue;
            }
            calls.Push(root);
            while (calls.Count > 0)
            {
                var node = calls.Peek();
                if (order[node] < 0)
                {
                    order[node] = low[node] = counter++;
                    stack.Push(node);
                    onStack[node] = true;
                }
                var next = adjacency[node];
                if (next is not null && nextEdge[node] < next.Count)
                {
                    var child = next[nextEdge[node]++];
                    if (order[child] < 0)
                    {
                        calls.Push(child);
                    }
                    else if (onStack[child])
                    {
                        low[node] = Math.Min(low[node], order[child]);
                    }
                    continue;
                }
                calls.Pop();
                if (calls.Count > 0)
                {
                    var parent = calls.Peek();
                    low[parent] = Math.Min(low[parent], low[node]);
                }
                if (low[node] == order[node])
                {
                    var component = new List<int>();
                    int member;
                    do
                    {
                        member = stack.Pop();
                        onStack[member] = false;
                        component.Add(member);
                    }
                    while (member != node);
                    components.Add(component);
                }
            }
        }
        return components;
    }

    private static readonly string RemoveSql = $"""
        WITH removed AS (
            DELETE FROM task_dependencies WHERE task_id = @id AND depends_on_id = @depends_on AND tenant_id = @tenant
        ), changed AS (
            UPDATE tasks t
            SET unmet_dependencies = CASE WHEN @state = 'waiting' THEN GREATEST(t.unmet_dependencies - 1, 0) ELSE t.unmet_dependencies END,
                updated_at = now()
            WHERE t.id = @id AND t.tenant_id = @tenant
            RETURNING {TaskRecord.ColumnsOf("t")}
        ), history AS (
            {History.InsertFrom("changed", "dependency_removed", "status", "status", "@message",
                "jsonb_build_object('depends_on_task_id', @depends_on::text, 'state', @state)", worker: "NULL", token: "NULL")}
        ), ready AS (
            SELECT * FROM changed WHERE @state = 'waiting' AND status = {TaskState.Sql(TaskState.Pending)} AND unmet_dependencies = 0
        ), met_history AS (
            {History.InsertFrom("ready", "dependencies_met", TaskState.Sql(TaskState.Pending), TaskState.Sql(TaskState.Pending), "'all dependencies are met'", worker: "NULL", token: "NULL")}
        )
        SELECT {TaskRecord.Columns} FROM changed
        """;

    /// <summary>
    /// Removes the edge "<paramref name="id"/> waits for <paramref name="dependsOn"/>". The edge row is locked
    /// before the task row, in the order the dependency resolver locks them, so a concurrent end of
    /// <paramref name="dependsOn"/> either resolves the edge first (it is then removed as <c>met</c> and the
    /// count is not lowered again) or finds it gone (and lowers nothing).
    /// </summary>
    public async Task<(TaskRecord Task, string RemovedState)> RemoveAsync(string tenant, Guid id, Guid dependsOn, CancellationToken cancellationToken)
    {
        var (task, state) = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            await using (var graphLock = new NpgsqlCommand(GraphLockSql, connection, tx))
            {
                graphLock.Parameters.AddWithValue("tenant", tenant);
                await graphLock.ExecuteNonQueryAsync(ct);
            }
            string? state;
            await using (var edge = new NpgsqlCommand(
                "SELECT state FROM task_dependencies WHERE task_id = @id AND depends_on_id = @depends_on AND tenant_id = @tenant FOR UPDATE",
                connection, tx))
            {
                edge.Parameters.AddWithValue("id", id);
                edge.Parameters.AddWithValue("depends_on", dependsOn);
                edge.Parameters.AddWithValue("tenant", tenant);
                state = await edge.ExecuteScalarAsync(ct) as string;
            }
            if (state is null)
            {
                throw new NotFoundException("dependency", $"{id}->{dependsOn}");
            }
            TaskRecord changed;
            await using (var remove = new NpgsqlCommand(RemoveSql, connection, tx))
            {
                remove.Parameters.AddWithValue("id", id);
                remove.Parameters.AddWithValue("depends_on", dependsOn);
                remove.Parameters.AddWithValue("tenant", tenant);
                remove.Parameters.AddWithValue("state", state);
                remove.Parameters.AddWithValue("message", $"no longer waits for {dependsOn}");
                await using var reader = await remove.ExecuteReaderAsync(ct);
                await reader.ReadAsync(ct);
                changed = TaskRecord.Read(reader);
            }
            await tx.CommitAsync(ct);
            return (changed, state);
        }, cancellationToken);
        if (state == "waiting" && task.Status == TaskState.Pending && task.UnmetDependencies == 0)
        {
            readySignal.Notify(tenant);
        }
        return (task, state);
    }
}

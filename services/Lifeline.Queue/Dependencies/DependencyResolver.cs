using Lifeline.Queue.Domain;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Queue.Dependencies;

/// <summary>A task that just ended, as far as its dependents are concerned.</summary>
public readonly record struct EndedTask(Guid Id, string Status);

/// <summary>What resolving dependencies changed.</summary>
public sealed class Resolution
{
    /// <summary>Dependents cancelled because a dependency can no longer be met (cascading).</summary>
    public int Cancelled { get; set; }

    /// <summary>Tenants that now have tasks whose last dependency was met.</summary>
    public HashSet<string> TenantsWithReadyTasks { get; } = [];
}

/// <summary>
/// Applies the end of tasks to the tasks that wait for them, inside the transaction that ended them:
/// each waiting edge becomes met or violated; a dependent whose last edge is met becomes ready; a
/// dependent with a violated edge is cancelled with a reason naming the dependency, and its own
/// dependents are resolved in turn (breadth-first, so deep chains need no recursion).
/// </summary>
public static class DependencyResolver
{
    private static readonly string ResolveEdgesSql = $"""
        WITH ended(id, status) AS (SELECT * FROM unnest(@ids::uuid[], @statuses::text[]))
        UPDATE task_dependencies d
        SET state = CASE
                WHEN d.type = 'completion' THEN 'met'
                WHEN d.type = 'success' AND e.status = {TaskState.Sql(TaskState.Completed)} THEN 'met'
                WHEN d.type = 'failure' AND e.status <> {TaskState.Sql(TaskState.Completed)} THEN 'met'
                ELSE 'violated' END,
            resolved_at = now()
        FROM ended e
        WHERE d.depends_on_id = ANY(@ids) AND d.depends_on_id = e.id AND d.state = 'waiting'
        RETURNING d.task_id, d.depends_on_id, d.state, d.type, e.status
        """;

    // Dependents are updated in id order to keep lock order stable between concurrent resolvers.
    private static readonly string ApplySql = $"""
        WITH delta(task_id, met, violation) AS (
            SELECT * FROM unnest(@task_ids::uuid[], @met::int[], @violations::text[])
        ), changed AS (
            UPDATE tasks t
            SET unmet_dependencies = GREATEST(t.unmet_dependencies - d.met, 0),
                status = CASE WHEN d.violation IS NULL THEN t.status ELSE {TaskState.Sql(TaskState.Cancelled)} END,
                completed_at = CASE WHEN d.violation IS NULL THEN t.completed_at ELSE now() END,
                error = CASE WHEN d.violation IS NULL THEN t.error ELSE jsonb_build_object(
                    'code', 'DEPENDENCY_UNSATISFIED', 'message', d.violation, 'retryable', false, 'severity', 'medium') END,
                updated_at = now()
            FROM delta d
            WHERE t.id = ANY(@task_ids) AND t.id = d.task_id AND {TaskLifecycle.DependencyViolated.FromGuard("t.status")}
            RETURNING t.id, t.tenant_id, t.type, t.status, t.unmet_dependencies, t.has_dependents, t.assigned_worker_id,
                      t.fencing_token, d.violation
        ), met_history AS (
            INSERT INTO task_history (tenant_id, task_id, task_type, event_type, from_status, to_status, message)
            SELECT tenant_id, id, type, 'dependencies_met', {TaskState.Sql(TaskState.Pending)}, {TaskState.Sql(TaskState.Pending)}, 'all dependencies are met'
            FROM changed WHERE violation IS NULL AND unmet_dependencies = 0
        ), cancel_history AS (
            INSERT INTO task_history (tenant_id, task_id, task_type, event_type, from_status, to_status, message)
            SELECT tenant_id, id, type, 'cancelled', {TaskState.Sql(TaskState.Pending)}, {TaskState.Sql(TaskState.Cancelled)}, violation
            FROM changed WHERE violation IS NOT NULL
        )
        SELECT id, tenant_id, status, unmet_dependencies, has_dependents FROM changed
        """;

    public static async Task<Resolution> ResolveAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyCollection<EndedTask> ended, CancellationToken cancellationToken)
    {
        var resolution = new Resolution();
        var frontier = ended.ToList();
        while (frontier.Count > 0)
        {
            var perDependent = new SortedDictionary<Guid, (int Met, string? Violation)>();
            await using (var edges = new NpgsqlCommand(ResolveEdgesSql, connection, transaction))
            {
                edges.Parameters.Add(new NpgsqlParameter("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = frontier.Select(e => e.Id).ToArray() });
                edges.Parameters.Add(new NpgsqlParameter("statuses", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = frontier.Select(e => e.Status).ToArray() });
                await using var reader = await edges.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    var dependent = reader.GetGuid(0);
                    var dependsOn = reader.GetGuid(1);
                    var met = reader.GetString(2) == "met";
                    perDependent.TryGetValue(dependent, out var entry);
                    if (met)
                    {
                        entry.Met++;
                    }
                    else
                    {
                        entry.Violation ??= Explain(dependsOn, reader.GetString(3), reader.GetString(4));
                    }
                    perDependent[dependent] = entry;
                }
            }
            frontier = [];
            if (perDependent.Count == 0)
            {
                break;
            }

            await using var apply = new NpgsqlCommand(ApplySql, connection, transaction);
            apply.Parameters.Add(new NpgsqlParameter("task_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = perDependent.Keys.ToArray() });
            apply.Parameters.Add(new NpgsqlParameter("met", NpgsqlDbType.Array | NpgsqlDbType.Integer) { Value = perDependent.Values.Select(v => v.Met).ToArray() });
            apply.Parameters.Add(new NpgsqlParameter("violations", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = perDependent.Values.Select(v => (object?)v.Violation ?? DBNull.Value).ToArray() });
            await using var changed = await apply.ExecuteReaderAsync(cancellationToken);
            while (await changed.ReadAsync(cancellationToken))
            {
                var status = changed.GetString(2);
                if (status == TaskState.Cancelled)
                {
                    resolution.Cancelled++;
                    if (changed.GetBoolean(4))
                    {
                        frontier.Add(new EndedTask(changed.GetGuid(0), status));
                    }
                }
                else if (changed.GetInt32(3) == 0)
                {
                    resolution.TenantsWithReadyTasks.Add(changed.GetString(1));
                }
            }
        }
        return resolution;
    }

    private static string Explain(Guid dependsOn, string type, string endedAs) => type switch
    {
        "failure" => $"dependency {dependsOn} completed, but this task runs only if it fails (failure dependency)",
        _ => $"dependency {dependsOn} ended as {endedAs}, but this task needs it to complete (success dependency)",
    };

    public static string TypeName(V1.DependencyType type) => type switch
    {
        V1.DependencyType.Completion => "completion",
        V1.DependencyType.Failure => "failure",
        _ => "success",
    };

    /// <summary>How an edge to a task that already ended resolves: met, or violated (null when the task has not ended).</summary>
    public static bool? Evaluate(string type, string dependsOnStatus)
    {
        if (!TaskState.IsEnded(dependsOnStatus))
        {
            return null;
        }
        return type switch
        {
            "completion" => true,
            "failure" => dependsOnStatus != TaskState.Completed,
            _ => dependsOnStatus == TaskState.Completed,
        };
    }
}

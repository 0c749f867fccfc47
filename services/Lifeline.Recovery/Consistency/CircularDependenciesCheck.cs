using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Microsoft.Extensions.Options;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.Consistency;

/// <summary>Tasks that wait for each other in a ring (the queue refuses these at insert; a restore or a manual change can bring them in).</summary>
public sealed class CircularDependenciesCheck(SuiteClients clients, CoveredTenants tenants) : IConsistencyCheck
{
    public CheckDefinition Definition { get; } = new()
    {
        Name = "circular_dependencies",
        Description = "Tasks whose unresolved dependencies form a cycle, so none of them ever becomes ready (QueueService.FindDependencyCycles).",
        Severity = Severity.Critical,
        Fixable = true,
        FixDescription = "Removes the edge that closed the cycle (its newest edge) with QueueService.RemoveDependency, once it is confirmed still part of a cycle.",
    };

    public async Task<IReadOnlyList<FoundIssue>> FindAsync(CancellationToken ct)
    {
        var issues = new List<FoundIssue>();
        foreach (var tenant in await tenants.RefreshAsync(ct))
        {
            var response = await clients.Queue.FindDependencyCyclesAsync(new FindDependencyCyclesRequest(), ServiceCall.For(tenant, ct));
            foreach (var cycle in response.Cycles)
            {
                var closing = cycle.Edges.OrderByDescending(e => e.CreatedAt?.ToDateTime() ?? DateTime.MinValue)
                    .ThenByDescending(e => e.TaskId, StringComparer.Ordinal).First();
                var ring = string.Join(" -> ", cycle.TaskIds.Append(cycle.TaskIds[0]));
                issues.Add(new FoundIssue(tenant, $"dependency:{closing.TaskId}->{closing.DependsOnTaskId}",
                    $"Tasks wait for each other in a cycle and never become ready: {ring}. The newest edge, {closing.TaskId} -> {closing.DependsOnTaskId}, closed it.",
                    true,
                    new Dictionary<string, string>
                    {
                        ["task_id"] = closing.TaskId,
                        ["depends_on_task_id"] = closing.DependsOnTaskId,
                        ["cycle"] = string.Join(",", cycle.TaskIds),
                        ["edge_created_at"] = closing.CreatedAt?.ToDateTime().ToString("O", System.Globalization.CultureInfo.InvariantCulture) ?? "",
                    }));
            }
        }
        return issues;
    }

    public async Task<FixOutcome> FixAsync(IssueToFix issue, bool dryRun, CancellationToken ct)
    {
        var taskId = issue.Details.Text("task_id");
        var dependsOn = issue.Details.Text("depends_on_task_id");
        var cycles = await clients.Queue.FindDependencyCyclesAsync(new FindDependencyCyclesRequest(), ServiceCall.For(issue.Tenant, ct));
        var stillThere = cycles.Cycles.SelectMany(c => c.Edges)
            .Any(e => string.Equals(e.TaskId, taskId, StringComparison.OrdinalIgnoreCase) && string.Equals(e.DependsOnTaskId, dependsOn, StringComparison.OrdinalIgnoreCase));
        if (!stillThere)
        {
            return new FixOutcome(FixStatus.NoLongerPresent, $"the edge {taskId} -> {dependsOn} is no longer part of a cycle");
        }
        if (dryRun)
        {
            return new FixOutcome(FixStatus.WouldFix, $"would remove the edge {taskId} -> {dependsOn}");
        }
        try
        {
            var response = await clients.Queue.RemoveDependencyAsync(new RemoveDependencyRequest { TaskId = taskId, DependsOnTaskId = dependsOn },
                ServiceCall.For(issue.Tenant, ct));
            return new FixOutcome(FixStatus.Fixed,
                $"removed the edge {taskId} -> {dependsOn} ({response.RemovedState}); task {taskId} now has {response.Task.UnmetDependencies} unmet dependencies");
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return new FixOutcome(FixStatus.NoLongerPresent, $"the edge {taskId} -> {dependsOn} was removed meanwhile");
        }
    }
}

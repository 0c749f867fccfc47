using Lifeline.Common.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Microsoft.Extensions.Options;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.Consistency;

/// <summary>Workers whose liveness the registry records differently in PostgreSQL (status) and Redis (heartbeat key).</summary>
public sealed class RedisPostgresDisagreementCheck(SuiteClients clients, CoveredTenants tenants) : IConsistencyCheck
{
    public CheckDefinition Definition { get; } = new()
    {
        Name = "redis_postgres_disagreement",
        Description = "Workers PostgreSQL believes alive without a heartbeat in Redis, offline ones that heartbeat, or ones Redis has no entry for "
            + "(RegistryService.ReconcileWorkers, dry run).",
        Severity = Severity.Medium,
        Fixable = true,
        FixDescription = "Applies the registry's own reconciliation to the worker (RegistryService.ReconcileWorkers): marks it lost or recovered, "
            + "or writes its Redis entry back.",
    };

    public async Task<IReadOnlyList<FoundIssue>> FindAsync(CancellationToken ct)
    {
        var issues = new List<FoundIssue>();
        foreach (var tenant in await tenants.RefreshAsync(ct))
        {
            var response = await clients.Registry.ReconcileWorkersAsync(new ReconcileWorkersRequest { DryRun = true }, ServiceCall.For(tenant, ct));
            foreach (var d in response.Disagreements)
            {
                issues.Add(new FoundIssue(tenant, $"worker:{d.WorkerId}", Describe(d), true, new Dictionary<string, string>
                {
                    ["worker_id"] = d.WorkerId,
                    ["postgres_status"] = d.PostgresStatus.ToString(),
                    ["alive_in_redis"] = d.AliveInRedis ? "true" : "false",
                    ["in_redis"] = d.InRedis ? "true" : "false",
                    ["action"] = d.Action.ToString(),
                }));
            }
        }
        return issues;
    }

    private static string Describe(WorkerDisagreement d) =>
        $"Worker {d.WorkerId} ({d.WorkerName}) is {d.PostgresStatus} in PostgreSQL but "
        + (!d.InRedis ? "Redis has no entry for it" : d.AliveInRedis ? "heartbeats in Redis" : "has no heartbeat in Redis")
        + $"; reconciliation: {d.Action}.";

    public async Task<FixOutcome> FixAsync(IssueToFix issue, bool dryRun, CancellationToken ct)
    {
        var workerId = issue.Details.Text("worker_id");
        var response = await clients.Registry.ReconcileWorkersAsync(new ReconcileWorkersRequest { DryRun = dryRun, WorkerId = workerId },
            ServiceCall.For(issue.Tenant, ct));
        if (response.Disagreements.FirstOrDefault() is not { } d)
        {
            return new FixOutcome(FixStatus.NoLongerPresent, $"PostgreSQL and Redis agree on worker {workerId} now");
        }
        if (dryRun)
        {
            return new FixOutcome(FixStatus.WouldFix, $"would reconcile worker {workerId}: {d.Action}");
        }
        return d.Applied
            ? new FixOutcome(FixStatus.Fixed, $"reconciled worker {workerId}: {d.Action} ({d.PostgresStatus} in PostgreSQL, alive in Redis: {d.AliveInRedis})")
            : new FixOutcome(FixStatus.NoLongerPresent, $"worker {workerId} changed meanwhile; reconciliation had nothing to do");
    }
}

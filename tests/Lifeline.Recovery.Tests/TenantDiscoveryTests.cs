using System.Diagnostics;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Tenancy;
using Lifeline.Recovery.V1;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Recovery.Tests;

/// <summary>A class environment whose recovery leader discovers tenants, as the service does by default.</summary>
public sealed class TenantDiscoveryEnvironment : RecoveryEnvironment
{
    protected override IDictionary<string, string?>? LeaderSettings =>
        new Dictionary<string, string?> { ["Recovery:DiscoverTenants"] = "true" };
}

/// <summary>Tenants nobody configured are covered once the queue or the registry knows them.</summary>
public sealed class TenantDiscoveryTests(TenantDiscoveryEnvironment env) : IClassFixture<TenantDiscoveryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_tenant_missing_from_the_configuration_is_discovered_and_its_lost_workers_tasks_recovered()
    {
        // Recovery:Tenants names default and acme only; this tenant appears after the service started.
        var tenant = $"newco-{Guid.NewGuid():N}"[..20];
        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient(tenant);
        var task = await queue.EnqueueAsync(type);
        var doomed = await LiveWorker.StartAsync(env, type, tenant);
        var leased = await queue.LeaseOneAsync(doomed.Id, type, start: true, leaseSeconds: 300);
        Assert.Equal(task.Id, leased.Id);

        var crashedAt = Stopwatch.StartNew();
        await doomed.CrashAsync();
        await using var rescuer = await LiveWorker.StartAsync(env, type, tenant);
        var resumed = await queue.LeaseOneAsync(rescuer.Id, type, start: true);
        var elapsed = crashedAt.Elapsed;

        Assert.Equal(task.Id, resumed.Id);
        Assert.True(resumed.FencingToken > leased.FencingToken);
        // TTL 3 s + detection; the 300 s lease had not expired, so recovery (not the queue's lease expiry) requeued it.
        Assert.True(elapsed < TimeSpan.FromSeconds(8), $"re-leased after {elapsed.TotalSeconds:0.0} s");
        var action = Assert.Single(await env.ActionsAsync(task.Id, 1));
        Assert.Equal(doomed.Id, action.WorkerId);
        Assert.True(action.Succeeded);

        // The periodic system state snapshot names it among the covered tenants.
        await InFlightTestSupport.EventuallyAsync(async () =>
        {
            var state = (await env.SystemStateClient().GetSystemStateAsync(new GetSystemStateRequest())).State;
            return state.Configuration.GetValueOrDefault("CoveredTenants", "").Split(',').Contains(tenant) ? state : null;
        }, TimeSpan.FromSeconds(10), $"a system state covering {tenant}");
        await queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = resumed.FencingToken });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Many_askers_at_once_all_get_the_configured_tenants_and_a_new_tenant_soon_after()
    {
        var covered = env.Recovery.App.Services.GetRequiredService<CoveredTenants>();
        var tenant = $"later-{Guid.NewGuid():N}"[..20];
        await env.QueueClient(tenant).EnqueueAsync(InFlightTestSupport.NewType());

        // The scanner, the watcher, the checks and the stats ask at once; they share the answers (one round of calls).
        var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => covered.RefreshAsync(CancellationToken.None)));
        Assert.All(answers, a => Assert.Superset(new HashSet<string> { "default", "acme" }, a.ToHashSet()));
        Assert.All(answers, a => Assert.Equal(a.Order(StringComparer.Ordinal), a));

        // An answer is reused for at most half a scan interval (0.5 s here), so the new tenant is covered soon after.
        await InFlightTestSupport.EventuallyAsync(async () =>
            (await covered.RefreshAsync(CancellationToken.None)).Contains(tenant) ? tenant : null, TimeSpan.FromSeconds(3), $"{tenant} covered");
    }
}

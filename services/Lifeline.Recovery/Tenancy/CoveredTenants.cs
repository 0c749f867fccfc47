using Grpc.Core;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Options;
using Lifeline.ServiceDefaults.Clients;
using Microsoft.Extensions.Options;
using QueueTenantsRequest = Lifeline.Queue.V1.ListActiveTenantsRequest;
using RegistryTenantsRequest = Lifeline.Registry.V1.ListActiveTenantsRequest;

namespace Lifeline.Recovery.Tenancy;

/// <summary>
/// The tenants recovery covers: those configured in <c>Recovery:Tenants</c> and, with <c>Recovery:DiscoverTenants</c>
/// (on by default), every tenant the queue has unfinished tasks for and every tenant the registry has registered
/// workers for (their service-to-service <c>ListActiveTenants</c>), so a tenant that appears after start is covered
/// without a configuration change. When discovery fails (a service is down) the last answer stands.
/// The scanner, the lost-worker watcher, the checks, the state snapshots and the stats all ask; one answer younger
/// than half a scan interval serves them all, and concurrent askers share one round of calls.
/// </summary>
public sealed partial class CoveredTenants(SuiteClients clients, IOptions<RecoveryOptions> options, TimeProvider time, ILogger<CoveredTenants> logger)
{
    private readonly SemaphoreSlim _oneAtATime = new(1, 1);
    private volatile string[] _discovered = [];
    private long _answeredAt = long.MinValue;

    /// <summary>The covered tenants as of the last refresh, in byte order.</summary>
    public IReadOnlyList<string> Current => Union(_discovered);

    /// <summary>The covered tenants, in byte order, asking the queue and the registry again unless a recent answer stands.</summary>
    public async Task<IReadOnlyList<string>> RefreshAsync(CancellationToken ct)
    {
        if (!options.Value.DiscoverTenants || Fresh())
        {
            return Current;
        }
        await _oneAtATime.WaitAsync(ct);
        try
        {
            if (!Fresh())
            {
                await AskAsync(ct);
            }
        }
        finally
        {
            _oneAtATime.Release();
        }
        return Current;
    }

    private bool Fresh() =>
        Interlocked.Read(ref _answeredAt) is var at && at != long.MinValue && time.GetElapsedTime(at) < options.Value.ScanInterval / 2;

    private async Task AskAsync(CancellationToken ct)
    {
        try
        {
            // The calls look across tenants; the header only names the caller's own default tenant.
            var queue = clients.Queue.ListActiveTenantsAsync(new QueueTenantsRequest(), ServiceCall.AcrossTenants(ct));
            var registry = clients.Registry.ListActiveTenantsAsync(new RegistryTenantsRequest(), ServiceCall.AcrossTenants(ct));
            var found = (await queue).Tenants.Concat((await registry).Tenants).Distinct(StringComparer.Ordinal).ToArray();
            foreach (var tenant in found.Except(_discovered, StringComparer.Ordinal).Except(options.Value.Tenants, StringComparer.Ordinal))
            {
                LogDiscovered(logger, tenant);
            }
            _discovered = found;
            Interlocked.Exchange(ref _answeredAt, time.GetTimestamp());
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            // Not marked fresh: the next asker tries again.
            LogDiscoveryFailed(logger, e.Status.Detail);
        }
    }

    private string[] Union(string[] discovered)
    {
        var all = options.Value.Tenants.Concat(discovered).Distinct(StringComparer.Ordinal).ToArray();
        Array.Sort(all, StringComparer.Ordinal);
        return all;
    }

    [LoggerMessage(EventId = 4009, Level = LogLevel.Information, Message = "Tenant {Tenant} found (unfinished tasks or registered workers): recovery now covers it")]
    private static partial void LogDiscovered(ILogger logger, string tenant);

    [LoggerMessage(EventId = 4010, Level = LogLevel.Warning, Message = "Could not ask the queue and the registry for their tenants ({Detail}); covering the tenants known so far")]
    private static partial void LogDiscoveryFailed(ILogger logger, string detail);
}

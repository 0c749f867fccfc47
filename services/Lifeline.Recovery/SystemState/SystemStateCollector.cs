using System.Globalization;
using Grpc.Core;
using Grpc.Health.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.SystemState;

/// <summary>The control plane as it is now. Null pool/counts: the registry/queue could not be read.</summary>
public sealed record LiveState(
    IReadOnlyList<PooledWorker>? AllWorkers, WorkerPool? Pool, IReadOnlyDictionary<string, long>? QueueCounts,
    IReadOnlyDictionary<string, double> Metrics, IReadOnlyDictionary<string, string> Configuration, IReadOnlyList<string> Unreachable)
{
    public SystemStatus Status => Unreachable.Count == 0 ? SystemStatus.Running : SystemStatus.Degraded;
}

/// <summary>
/// Reads the live control plane for a snapshot: the registry's workers and the queue's counts over the
/// covered tenants, whether queue, registry, checkpoint and Redis answer (grpc.health.v1 / PING), today's
/// recovery metrics from <c>recovery_actions</c>, and the recovery settings in effect (never secrets).
/// </summary>
public sealed class SystemStateCollector(SuiteClients clients, IConnectionMultiplexer redis, NpgsqlDataSource dataSource,
    CoveredTenants covered, IOptions<RecoveryOptions> options, TimeProvider time)
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(3);

    public async Task<LiveState> CollectAsync(CancellationToken ct)
    {
        var tenants = await covered.RefreshAsync(ct);
        var unreachable = new List<string>();
        foreach (var service in new[] { "queue", "registry", "checkpoint" })
        {
            if (await ProbeAsync(service, ct) is { } problem)
            {
                unreachable.Add(problem);
            }
        }
        try
        {
            await redis.GetDatabase().PingAsync();
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            unreachable.Add($"redis: {e.Message}");
        }

        List<PooledWorker>? all = [];
        try
        {
            foreach (var tenant in tenants)
            {
                foreach (var w in await clients.AllWorkersAsync(tenant, ct))
                {
                    all.Add(new PooledWorker(tenant, w.Id, w.Name, w.IsDeregistered() ? "deregistered" : w.StatusName()));
                }
            }
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled || !ct.IsCancellationRequested)
        {
            all = null;
            AddOnce(unreachable, $"registry: {e.Status.Detail}");
        }

        Dictionary<string, long>? counts = [];
        try
        {
            foreach (var tenant in tenants)
            {
                var stats = await clients.Queue.GetQueueStatsAsync(new GetQueueStatsRequest(), ServiceCall.For(tenant, ct));
                foreach (var (status, count) in stats.Totals)
                {
                    counts[status] = counts.GetValueOrDefault(status) + count;
                }
            }
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled || !ct.IsCancellationRequested)
        {
            counts = null;
            AddOnce(unreachable, $"queue: {e.Status.Detail}");
        }

        var pool = all is null ? null : WorkerPool.Of(all.Where(w => w.Status != "deregistered").ToList());
        return new LiveState(all, pool, counts, await MetricsAsync(ct), Configuration(tenants), unreachable);
    }

    private static void AddOnce(List<string> problems, string problem)
    {
        var service = problem[..problem.IndexOf(':', StringComparison.Ordinal)];
        if (!problems.Any(p => p.StartsWith(service + ":", StringComparison.Ordinal)))
        {
            problems.Add(problem);
        }
    }

    /// <summary>Null when the service answers its health check with SERVING; else what is wrong.</summary>
    private async Task<string?> ProbeAsync(string service, CancellationToken ct)
    {
        if (!clients.Has(service))
        {
            return $"{service}: not configured (services:{service}:grpc:0)";
        }
        try
        {
            var reply = await clients.Health(service)
                .CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow + ProbeTimeout, cancellationToken: ct);
            return reply.Status == HealthCheckResponse.Types.ServingStatus.Serving ? null : $"{service}: health {reply.Status}";
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled || !ct.IsCancellationRequested)
        {
            return $"{service}: {e.StatusCode} {e.Status.Detail}";
        }
    }

    /// <summary>Today's (UTC) recovery actions: recovered_today, failed_today, success_rate (1 when there were none).</summary>
    private async Task<IReadOnlyDictionary<string, double>> MetricsAsync(CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT count(*) FILTER (WHERE succeeded), count(*) FILTER (WHERE NOT succeeded)
            FROM recovery_actions WHERE recovered_at >= @since
            """);
        command.Parameters.AddWithValue("since", time.GetUtcNow().UtcDateTime.Date);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var recovered = reader.GetInt64(0);
        var failed = reader.GetInt64(1);
        return new Dictionary<string, double>
        {
            ["recovered_today"] = recovered,
            ["failed_today"] = failed,
            ["success_rate"] = recovered + failed == 0 ? 1 : (double)recovered / (recovered + failed),
        };
    }

    /// <summary>
    /// The settings in effect and the tenants covered under them. Listed one by one, so nothing secret (webhook
    /// secrets) can slip in.
    /// </summary>
    public IReadOnlyDictionary<string, string> Configuration(IReadOnlyList<string> coveredTenants)
    {
        var o = options.Value;
        static string Span(TimeSpan t) => t.ToString("c", CultureInfo.InvariantCulture);
        return new Dictionary<string, string>
        {
            ["Tenants"] = string.Join(",", o.Tenants.Distinct(StringComparer.Ordinal)),
            ["DiscoverTenants"] = o.DiscoverTenants ? "true" : "false",
            ["CoveredTenants"] = string.Join(",", coveredTenants),
            ["LeaderLeaseDuration"] = Span(o.LeaderLeaseDuration),
            ["ScanInterval"] = Span(o.ScanInterval),
            ["UnstartedThreshold"] = Span(o.UnstartedThreshold),
            ["ScanPageSize"] = o.ScanPageSize.ToString(CultureInfo.InvariantCulture),
            ["StateSnapshotInterval"] = Span(o.StateSnapshotInterval),
            ["TimeoutGrace"] = Span(o.TimeoutGrace),
            ["Webhooks"] = string.Join(",", o.Webhooks.Select(w => w.Name)),
            ["WebhookMaxAttempts"] = o.WebhookMaxAttempts.ToString(CultureInfo.InvariantCulture),
            ["WebhookInitialBackoff"] = Span(o.WebhookInitialBackoff),
            ["WebhookMaxBackoff"] = Span(o.WebhookMaxBackoff),
            ["WebhookPollInterval"] = Span(o.WebhookPollInterval),
            ["CustomPlans"] = string.Join(",", o.CustomPlans.Keys.Order(StringComparer.Ordinal)),
        };
    }
}

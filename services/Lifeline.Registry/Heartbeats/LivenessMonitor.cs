using Lifeline.Registry.Breakers;
using Lifeline.Registry.Options;
using Lifeline.Registry.Workers;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Lifeline.Registry.Heartbeats;

/// <summary>
/// Finds workers whose heartbeat lapsed and announces each lapse exactly once, on any number of registry
/// instances: the Redis claim script lets one instance win a lapse, and the PostgreSQL transition to
/// <c>offline</c> (which writes the <c>lost</c> event) happens only once per lapse. A slower
/// reconciliation compares PostgreSQL with Redis, so a claim lost to a crash or to Redis losing data is
/// still found (level-triggered), and a worker whose beats resumed is announced recovered.
/// Also turns expired open circuit breakers half-open.
/// </summary>
public sealed partial class LivenessMonitor(
    RedisMirror mirror, WorkerDirectory directory, BreakerStore breakers, NpgsqlDataSource dataSource,
    IOptions<RegistryOptions> options, ILogger<LivenessMonitor> logger) : BackgroundService
{
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // Restore: breakers whose open period ended while no registry ran are half-open now.
        try
        {
            await breakers.HalfOpenExpiredAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is NpgsqlException or RedisException)
        {
            LogPassFailed(logger, ex);
        }
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.MonitorInterval);
        var lastReconcile = DateTime.MinValue;
        do
        {
            try
            {
                await DetectLapsesAsync(stoppingToken);
                await breakers.HalfOpenExpiredAsync(stoppingToken);
                if (DateTime.UtcNow - lastReconcile >= options.Value.ReconcileInterval)
                {
                    await ReconcileAsync(stoppingToken);
                    lastReconcile = DateTime.UtcNow;
                }
            }
            catch (Exception ex) when (ex is NpgsqlException or RedisException or TimeoutException)
            {
                LogPassFailed(logger, ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>Announces lapsed heartbeats found in the deadline index. Returns how many workers were marked lost.</summary>
    public async Task<int> DetectLapsesAsync(CancellationToken ct)
    {
        var lost = 0;
        var now = DateTime.UtcNow;
        foreach (var (tenant, id) in await mirror.LapsedAsync(now, 1000))
        {
            var claim = await mirror.ClaimLapseAsync(tenant, id, now);
            if (claim.Result == LapseClaimResult.Won && await directory.MarkLostAsync(tenant, id, claim.Running, ct) is not null)
            {
                lost++;
                LogLost(logger, id, tenant);
            }
        }
        return lost;
    }

    /// <summary>PostgreSQL against Redis: missed lapses become lost, resumed heartbeats become recovered.</summary>
    public async Task ReconcileAsync(CancellationToken ct)
    {
        var candidates = new List<(string Tenant, Guid Id, string Status)>();
        await using (var command = dataSource.CreateCommand("""
            SELECT tenant_id, id, status FROM workers
            WHERE deregistered_at IS NULL
              AND ((status <> 'offline' AND last_heartbeat_at < now() - make_interval(secs => @ttl))
                   OR status = 'offline')
            LIMIT 5000
            """))
        {
            command.Parameters.AddWithValue("ttl", options.Value.HeartbeatTtl.TotalSeconds);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                candidates.Add((reader.GetString(0), reader.GetGuid(1), reader.GetString(2)));
            }
        }
        foreach (var (tenant, id, status) in candidates)
        {
            await ReconcileWorkerAsync(tenant, id, status, ct);
        }
    }

    /// <summary>What reconciling one worker did.</summary>
    public enum Reconciled
    {
        Nothing,
        MarkedLost,
        MarkedRecovered,
        MirrorRewritten,
    }

    /// <summary>
    /// Reconciles one worker whose PostgreSQL status is <paramref name="status"/> with Redis (also used by
    /// RegistryService.ReconcileWorkers). Each change is guarded, so it happens once across instances.
    /// </summary>
    public async Task<Reconciled> ReconcileWorkerAsync(string tenant, Guid id, string status, CancellationToken ct)
    {
        var alive = await mirror.IsAliveAsync(tenant, id);
        if (status == "offline" && alive)
        {
            return await directory.MarkRecoveredAsync(tenant, id, ct) is null ? Reconciled.Nothing : Reconciled.MarkedRecovered;
        }
        if (status == "offline" || alive)
        {
            return Reconciled.Nothing;
        }
        var claim = await mirror.ClaimLapseAsync(tenant, id, DateTime.UtcNow);
        if (claim.Result == LapseClaimResult.MirrorMissing)
        {
            // No mirror entry at all: Redis lost its data, so beats since could not be recorded (the worker
            // may be beating right now). Write the entry back from PostgreSQL with a fresh heartbeat clock;
            // a worker that is really gone lapses one TTL later and is announced lost then.
            if (await directory.FindAsync(tenant, id, ct) is { DeregisteredAt: null } worker)
            {
                await mirror.WriteWorkerAsync(worker, await breakers.GetStateAsync(id, ct), alive: true);
                return Reconciled.MirrorRewritten;
            }
            return Reconciled.Nothing;
        }
        if (claim.Result == LapseClaimResult.NotLapsed && await mirror.IsAliveAsync(tenant, id))
        {
            return Reconciled.Nothing; // it beat again since the check above: not lost
        }
        // Won the claim, or another instance claimed the lapse in Redis (and may have crashed before
        // PostgreSQL knew): the transition to offline happens once either way.
        if (await directory.MarkLostAsync(tenant, id, claim.Running, ct) is not null)
        {
            LogLost(logger, id, tenant);
            return Reconciled.MarkedLost;
        }
        return Reconciled.Nothing;
    }

    [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "Worker {WorkerId} of tenant {Tenant} is lost: its heartbeat lapsed")]
    private static partial void LogLost(ILogger logger, Guid workerId, string tenant);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "Liveness pass failed; it runs again on the next tick")]
    private static partial void LogPassFailed(ILogger logger, Exception exception);
}

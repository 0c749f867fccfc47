using Lifeline.Registry.Breakers;
using Lifeline.Registry.Options;
using Lifeline.Registry.Workers;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;
using Lifeline.ServiceDefaults.Telemetry;

namespace Lifeline.Registry.Heartbeats;

/// <summary>
/// Finds workers whose heartbeat lapsed and announces each lapse exactly once, on any number of registry
/// instances: the Redis claim script lets one instance win a lapse, and the PostgreSQL transition to
/// <c>offline</c> (which writes the <c>lost</c> event) happens only once per lapse. A slower
/// reconciliation compares PostgreSQL with Redis, so a claim lost to a crash or to Redis losing data is
/// still found (level-triggered), and a worker whose beats resumed is announced recovered.
/// Also turns expired open circuit breakers half-open (first at start, before the registry serves).
/// <para>
/// The monitor does not count its own downtime, nor an outage of Redis or PostgreSQL, against the workers: while
/// it could not look, workers may have been unable to beat (no registry to beat to, Redis unreachable). So after
/// it starts, and after a pass that failed, it judges no lapse until one heartbeat TTL has passed since it could
/// reach both stores again — every worker gets a full TTL to be heard first.
/// </para>
/// </summary>
public sealed partial class LivenessMonitor(
    RedisMirror mirror, WorkerDirectory directory, BreakerStore breakers, NpgsqlDataSource dataSource,
    IOptions<RegistryOptions> options, ILogger<LivenessMonitor> logger)
    : BackgroundLoop(logger, LoopBackoff.Between(options.Value.MonitorInterval, options.Value.HeartbeatInterval))
{
    private const int LapsesPerPass = 1000;

    private DateTime? _judgingFrom; // null: the stores have not been reachable since start or since the last failed pass
    private DateTime _lastReconcile = DateTime.MinValue;

    protected override bool FirstPassAtStart => true;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        try
        {
            var now = DateTime.UtcNow;
            await breakers.HalfOpenExpiredAsync(stoppingToken); // reaches PostgreSQL
            var lapsed = await mirror.LapsedAsync(now, LapsesPerPass); // reaches Redis
            if (_judgingFrom is not { } from)
            {
                // From now, not from the pass's start: the reads above may have waited out most of an outage (a
                // paused Redis answers its backlog on resume), and the workers' TTL starts when the stores answer.
                _judgingFrom = DateTime.UtcNow + options.Value.HeartbeatTtl;
                LogGrace(logger, options.Value.HeartbeatTtl.TotalMilliseconds);
                return options.Value.MonitorInterval;
            }
            if (now < from)
            {
                return options.Value.MonitorInterval;
            }
            await AnnounceLapsesAsync(lapsed, now, stoppingToken);
            if (DateTime.UtcNow - _lastReconcile >= options.Value.ReconcileInterval)
            {
                await ReconcileAsync(stoppingToken);
                _lastReconcile = DateTime.UtcNow;
            }
            return options.Value.MonitorInterval;
        }
        catch
        {
            _judgingFrom = null; // could not look: every worker gets a full TTL again once the stores answer
            throw;
        }
    }

    /// <summary>Announces the lapses found in the deadline index. Returns how many workers were marked lost.</summary>
    private async Task<int> AnnounceLapsesAsync(IReadOnlyList<(string Tenant, Guid Id)> lapsed, DateTime now, CancellationToken ct)
    {
        var lost = 0;
        foreach (var (tenant, id) in lapsed)
        {
            var claim = await mirror.ClaimLapseAsync(tenant, id, now);
            if (claim.Result == LapseClaimResult.Won && await MarkLostAsync(tenant, id, claim.Running, ct) == Reconciled.MarkedLost)
            {
                lost++;
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
        MirrorRemoved,
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
        return await MarkLostAsync(tenant, id, claim.Running, ct);
    }

    private async Task<Reconciled> MarkLostAsync(string tenant, Guid id, string[] running, CancellationToken ct)
    {
        using var scope = logger.BeginScope(new TaskScope(tenant, workerId: id.ToString()));
        switch (await directory.MarkLostAsync(tenant, id, running, ct))
        {
            case LostMarking.Marked:
                LogLost(logger, id, tenant);
                return Reconciled.MarkedLost;
            case LostMarking.Unknown:
                // Not an error: PostgreSQL is the record, and it does not know the worker (its database was restored from
                // before the worker registered, or retention removed it meanwhile). Nothing to announce; the stray mirror
                // entry goes, so the queue stops seeing the worker and no later pass finds it again.
                await mirror.RemoveAsync(tenant, id);
                LogUnknownDropped(logger, id, tenant);
                return Reconciled.MirrorRemoved;
            default:
                return Reconciled.Nothing;
        }
    }

    [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "Worker {WorkerId} of tenant {Tenant} is lost: its heartbeat lapsed")]
    private static partial void LogLost(ILogger logger, Guid workerId, string tenant);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Warning,
        Message = "The heartbeat of worker {WorkerId} of tenant {Tenant} lapsed, but the registry database does not know it (restored from before it registered?); its Redis entry was removed")]
    private static partial void LogUnknownDropped(ILogger logger, Guid workerId, string tenant);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Information,
        Message = "Liveness: no lapse is judged for {GraceMs:0} ms (one heartbeat TTL), so every worker can be heard first after the monitor could not look")]
    private static partial void LogGrace(ILogger logger, double graceMs);
}

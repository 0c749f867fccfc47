using System.Collections.Concurrent;
using Lifeline.Registry.Breakers;
using Lifeline.Registry.Options;
using Lifeline.Registry.V1;
using Lifeline.Registry.Workers;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Registry.Heartbeats;

/// <summary>A validated heartbeat.</summary>
public sealed record HeartbeatInput(Guid WorkerId, long SessionEpoch, string? Status, string[] RunningTaskIds, double Load);

/// <summary>What a heartbeat answers.</summary>
public sealed record HeartbeatOutcome(string Status, DateTime ExpiresAt, IReadOnlyList<WorkerCommand> Commands);

/// <summary>
/// Records heartbeats: one Redis script per beat, no PostgreSQL write. The beats seen are kept in
/// memory and written to PostgreSQL in one statement per flush interval (coalesced last_heartbeat_at).
/// </summary>
public sealed class HeartbeatRecorder(
    RedisMirror mirror, WorkerDirectory directory, BreakerStore breakers, NpgsqlDataSource dataSource,
    IOptions<RegistryOptions> options, Lifeline.Registry.Telemetry.RegistryTelemetry telemetry, ILogger<HeartbeatRecorder> logger) : BackgroundLoop(logger)
{
    private sealed record Seen(string Tenant, Guid Id, DateTime At, string Status, string[] Running, double Load);

    private ConcurrentDictionary<(string, Guid), Seen> _seen = new();

    public async Task<HeartbeatOutcome> BeatAsync(string tenant, HeartbeatInput beat, CancellationToken ct)
    {
        var result = await mirror.HeartbeatAsync(tenant, beat.WorkerId, beat.SessionEpoch, beat.Status, beat.RunningTaskIds, beat.Load);
        if (result.Result == BeatResult.UnknownInRedis)
        {
            // Redis lost the entry (or never had it): PostgreSQL decides, and the entry is written back with its
            // heartbeat clock running (in one batch), so a liveness pass between the rewrite and this beat does not
            // find an entry without a heartbeat and announce a lapse of a worker that is beating right now.
            var worker = await directory.GetAsync(tenant, beat.WorkerId, ct);
            if (worker.DeregisteredAt is null)
            {
                await mirror.WriteWorkerAsync(worker, await breakers.GetStateAsync(worker.Id, ct), alive: true);
                result = await mirror.HeartbeatAsync(tenant, beat.WorkerId, beat.SessionEpoch, beat.Status, beat.RunningTaskIds, beat.Load);
            }
            else
            {
                result = result with { Result = BeatResult.Deregistered };
            }
        }
        switch (result.Result)
        {
            case BeatResult.StaleSession:
                throw new PreconditionFailedException("STALE_SESSION",
                    $"Session {beat.SessionEpoch} of worker {beat.WorkerId} was superseded by session {result.CurrentEpoch}; register again.")
                {
                    Metadata = { ["current_epoch"] = result.CurrentEpoch.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                };
            case BeatResult.Deregistered:
                throw new PreconditionFailedException("WORKER_DEREGISTERED", $"Worker {beat.WorkerId} is deregistered; register it again.");
            case BeatResult.UnknownInRedis:
                throw new NotFoundException("worker", beat.WorkerId.ToString());
        }
        var now = DateTime.UtcNow;
        telemetry.Beat(tenant, beat.WorkerId);
        _seen[(tenant, beat.WorkerId)] = new Seen(tenant, beat.WorkerId, now, result.Status, beat.RunningTaskIds, beat.Load);
        if (result.WasOffline)
        {
            await directory.MarkRecoveredAsync(tenant, beat.WorkerId, ct);
        }
        return new HeartbeatOutcome(result.Status, now + options.Value.HeartbeatTtl, result.Commands);
    }

    protected override TimeSpan FirstDelay => options.Value.HeartbeatFlushInterval;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await FlushAsync(stoppingToken);
        return options.Value.HeartbeatFlushInterval;
    }

    protected override Task RunLastPassAsync(CancellationToken cancellationToken) => FlushAsync(cancellationToken); // what was seen before shutdown

    /// <summary>Writes the beats seen since the last flush in one statement (kept for the next flush if it fails).</summary>
    public async Task<int> FlushAsync(CancellationToken ct)
    {
        var batch = Interlocked.Exchange(ref _seen, new ConcurrentDictionary<(string, Guid), Seen>()).Values.ToList();
        if (batch.Count == 0)
        {
            return 0;
        }
        try
        {
            await using var command = dataSource.CreateCommand("""
                UPDATE workers w
                SET last_heartbeat_at = GREATEST(w.last_heartbeat_at, b.at), load = b.load,
                    running_task_ids = string_to_array(b.running, E'\n'),
                    status = CASE WHEN w.status IN ('draining', 'offline') THEN w.status ELSE b.status END
                FROM unnest(@ids::uuid[], @tenants::text[], @at::timestamptz[], @status::text[], @running::text[], @load::float8[])
                     AS b(id, tenant_id, at, status, running, load)
                WHERE w.id = b.id AND w.tenant_id = b.tenant_id AND w.deregistered_at IS NULL
                """);
            command.Parameters.AddWithValue("ids", batch.Select(b => b.Id).ToArray());
            command.Parameters.AddWithValue("tenants", batch.Select(b => b.Tenant).ToArray());
            command.Parameters.AddWithValue("at", batch.Select(b => b.At).ToArray());
            command.Parameters.AddWithValue("status", batch.Select(b => b.Status is "online" or "busy" or "error" ? b.Status : "online").ToArray());
            command.Parameters.AddWithValue("running", batch.Select(b => string.Join('\n', b.Running)).ToArray());
            command.Parameters.AddWithValue("load", batch.Select(b => b.Load).ToArray());
            return await command.ExecuteNonQueryAsync(ct);
        }
        catch
        {
            foreach (var seen in batch)
            {
                _seen.TryAdd((seen.Tenant, seen.Id), seen); // kept for the next flush unless a newer beat arrived
            }
            throw;
        }
    }
}

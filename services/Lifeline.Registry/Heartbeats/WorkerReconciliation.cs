using Lifeline.Registry.Workers;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Registry.Heartbeats;

/// <summary>One worker whose PostgreSQL status and Redis heartbeat disagree, and what reconciling does about it.</summary>
public sealed record WorkerDisagreementRecord(
    Guid WorkerId, string Name, string PostgresStatus, bool AliveInRedis, bool InRedis, string Action, bool Applied);

/// <summary>
/// RegistryService.ReconcileWorkers: compares every registered worker of a tenant (not only those the
/// periodic pass picks, whose PostgreSQL heartbeat is old) with Redis, and applies the liveness
/// monitor's own reconciliation to each disagreement unless it is a dry run.
/// </summary>
public sealed class WorkerReconciliation(NpgsqlDataSource dataSource, RedisMirror mirror, LivenessMonitor monitor)
{
    public const string MarkLost = "mark_lost";
    public const string MarkRecovered = "mark_recovered";
    public const string RewriteMirror = "rewrite_mirror";

    public async Task<(IReadOnlyList<WorkerDisagreementRecord> Disagreements, int Examined)> ReconcileAsync(
        string tenant, Guid? workerId, bool dryRun, CancellationToken ct)
    {
        var workers = new List<(Guid Id, string Name, string Status)>();
        await using (var command = dataSource.CreateCommand("""
            SELECT id, name, status FROM workers
            WHERE tenant_id = @tenant AND deregistered_at IS NULL AND (@id::uuid IS NULL OR id = @id)
            ORDER BY name
            """))
        {
            command.Parameters.AddWithValue("tenant", tenant);
            command.Parameters.Add(new NpgsqlParameter("id", NpgsqlDbType.Uuid) { Value = workerId is { } w ? w : DBNull.Value });
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                workers.Add((reader.GetGuid(0), reader.GetString(1), reader.GetString(2)));
            }
        }
        var found = new List<WorkerDisagreementRecord>();
        foreach (var (id, name, status) in workers)
        {
            var alive = await mirror.IsAliveAsync(tenant, id);
            var inRedis = await mirror.LiveAsync(tenant, id) is not null;
            string? action = (status, alive) switch
            {
                ("offline", true) => MarkRecovered,
                ("offline", false) => null,
                (_, false) => inRedis ? MarkLost : RewriteMirror,
                _ => null,
            };
            if (action is null)
            {
                continue;
            }
            var applied = !dryRun && await monitor.ReconcileWorkerAsync(tenant, id, status, ct) != LivenessMonitor.Reconciled.Nothing;
            found.Add(new WorkerDisagreementRecord(id, name, status, alive, inRedis, action, applied));
        }
        return (found, workers.Count);
    }
}

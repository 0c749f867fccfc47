using Grpc.Core;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Leadership;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Microsoft.Extensions.Options;
using Npgsql;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.InFlight;

/// <summary>
/// The fast path: while this instance leads, it follows the registry's <c>WatchWorkers</c> stream
/// of every covered tenant (lost events only) from a cursor stored in the recovery database, and
/// recovers the tasks of a lost worker at once — before their leases expire. The cursor is saved
/// after each event is handled, so a new leader resumes where the old one stopped (at least once;
/// the fenced, idempotent recovery makes a repeat harmless).
/// </summary>
public sealed partial class WorkerLossWatcher(
    SuiteClients clients, TaskRecoverer recoverer, RecoveryLeader leader, NpgsqlDataSource dataSource, IOptions<RecoveryOptions> options,
    TimeProvider time, ILogger<WorkerLossWatcher> logger) : BackgroundService
{
    private const string Source = "registry-workers";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var term = await leader.WaitForTermAsync(stoppingToken);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, term.Lost);
                await Task.WhenAll(options.Value.Tenants.Select(tenant => WatchTenantAsync(tenant, term, linked.Token)));
            }
            catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
            {
            }
        }
    }

    private async Task WatchTenantAsync(string tenant, LeaderTerm term, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var cursor = await LoadCursorAsync(tenant, ct);
                using var call = clients.Registry.WatchWorkers(
                    new WatchWorkersRequest { EventTypes = { WorkerEventType.Lost }, AfterEventId = cursor ?? "" },
                    new CallOptions(new Metadata { { "x-lifeline-tenant", tenant } }, cancellationToken: ct));
                await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
                {
                    var e = message.Event;
                    if (e.Type == WorkerEventType.Lost)
                    {
                        await RecoverWorkerTasksAsync(tenant, e, term, ct);
                    }
                    await SaveCursorAsync(tenant, e.EventId, ct);
                }
            }
            catch (Exception e) when (!ct.IsCancellationRequested && e is RpcException or NpgsqlException or InvalidOperationException)
            {
                LogWatchFailed(logger, tenant, e);
                await Task.Delay(TimeSpan.FromSeconds(1), time, ct);
            }
        }
    }

    /// <summary>Recovers every task the queue has leased to the lost worker.</summary>
    public async Task<int> RecoverWorkerTasksAsync(string tenant, WorkerEvent lost, LeaderTerm term, CancellationToken ct)
    {
        var detectedAt = lost.OccurredAt?.ToDateTime() ?? time.GetUtcNow().UtcDateTime;
        var recovered = 0;
        foreach (var status in new[] { TaskStatus.Assigned, TaskStatus.Running })
        {
            var token = "";
            do
            {
                var page = await clients.Queue.ListTasksAsync(
                    new ListTasksRequest { Status = status, WorkerId = lost.WorkerId, PageSize = 1000, PageToken = token }, SuiteClients.For(tenant, ct));
                foreach (var task in page.Tasks.Where(t => t.AssignedWorkerId == lost.WorkerId))
                {
                    var (result, _) = await recoverer.RecoverAsync(tenant, task, RecoveryTrigger.WorkerLost, detectedAt, term, ct);
                    recovered += result == RecoveryResult.Recovered ? 1 : 0;
                }
                token = page.NextPageToken;
            }
            while (token.Length > 0);
        }
        LogLost(logger, lost.WorkerId, tenant, recovered);
        return recovered;
    }

    private async Task<string?> LoadCursorAsync(string tenant, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT position FROM watch_cursors WHERE tenant_id = @t AND source = @s");
        command.Parameters.AddWithValue("t", tenant);
        command.Parameters.AddWithValue("s", Source);
        return (string?)await command.ExecuteScalarAsync(ct);
    }

    private async Task SaveCursorAsync(string tenant, string position, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            "INSERT INTO watch_cursors (tenant_id, source, position, updated_at) VALUES (@t, @s, @p, now()) " +
            "ON CONFLICT (tenant_id, source) DO UPDATE SET position = excluded.position, updated_at = now()");
        command.Parameters.AddWithValue("t", tenant);
        command.Parameters.AddWithValue("s", Source);
        command.Parameters.AddWithValue("p", position);
        await command.ExecuteNonQueryAsync(ct);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId} (tenant {Tenant}) lost: {Recovered} task(s) recovered")]
    private static partial void LogLost(ILogger logger, string workerId, string tenant, int recovered);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Watching lost workers of tenant {Tenant} failed; reconnecting")]
    private static partial void LogWatchFailed(ILogger logger, string tenant, Exception exception);
}

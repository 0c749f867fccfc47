using Grpc.Core;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.Tenancy;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;
using Lifeline.ServiceDefaults.Telemetry;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.InFlight;

/// <summary>
/// The fast path: while this instance leads, it follows the registry's <c>WatchWorkers</c> stream
/// of every covered tenant (lost events only; see <see cref="CoveredTenants"/>) from a cursor stored in the recovery database, and
/// recovers the tasks of a lost worker at once — before their leases expire. The cursor is saved
/// after each event is handled, so a new leader resumes where the old one stopped (at least once;
/// the fenced, idempotent recovery makes a repeat harmless).
/// </summary>
public sealed partial class WorkerLossWatcher(
    SuiteClients clients, TaskRecoverer recoverer, [FromKeyedServices(RecoveryLeadership.Role)] LeaderElection leader, NpgsqlDataSource dataSource, CoveredTenants tenants,
    IOptions<RecoveryOptions> options, TimeProvider time, ILogger<WorkerLossWatcher> logger)
    : LeaderLoop(leader, logger, Backoff(options.Value), time)
{
    private const string Source = "registry-workers";
    private const int EventsAtOnce = 16;
    private const int TasksAtOnce = 8;

    private static LoopBackoff Backoff(RecoveryOptions options) => LoopBackoff.Between(options.ScanInterval, TimeSpan.FromSeconds(30));

    /// <summary>
    /// One pass per term: one watch per covered tenant, and every scan interval a look for tenants found since (each
    /// its own watch then). Returns when the term ends, with every watch of it.
    /// </summary>
    protected override async Task<TimeSpan> RunTermPassAsync(LeaderTerm term, CancellationToken ct)
    {
        var watches = new Dictionary<string, Task>(StringComparer.Ordinal);
        try
        {
            await new LoopRunner($"{nameof(WorkerLossWatcher)}.tenants", logger, Backoff(options.Value), Time).RunAsync(async token =>
            {
                foreach (var tenant in await tenants.RefreshAsync(token))
                {
                    if (!watches.TryGetValue(tenant, out var watch) || watch.IsCompleted)
                    {
                        watches[tenant] = WatchTenantAsync(tenant, term, token);
                    }
                }
                return options.Value.ScanInterval;
            }, ct);
        }
        finally
        {
            await Task.WhenAll(watches.Values); // they end with the term (a watch never throws)
        }
        return TimeSpan.Zero;
    }

    /// <summary>Follows one tenant's lost events until the term ends, reconnecting under the loop policy whenever the stream breaks.</summary>
    private async Task WatchTenantAsync(string tenant, LeaderTerm term, CancellationToken ct)
    {
        using var scope = logger.BeginScope(new TaskScope(tenant));
        await new LoopRunner($"{nameof(WorkerLossWatcher)}.watch", logger, LoopBackoff.Default, Time).RunAsync(async token =>
        {
            await FollowAsync(tenant, term, token);
            return TimeSpan.Zero; // the stream ended: reconnect from the saved cursor
        }, ct);
    }

    private async Task FollowAsync(string tenant, LeaderTerm term, CancellationToken ct)
    {
        var cursor = await LoadCursorAsync(tenant, ct);
        using var call = clients.Registry.WatchWorkers(
            new WatchWorkersRequest { EventTypes = { WorkerEventType.Lost }, AfterEventId = cursor ?? "" },
            ServiceCall.For(tenant, ct));
        // Lost workers are handled concurrently (a rack going down loses many at once); the cursor advances in
        // stream order, past an event only once it and every earlier one are handled.
        var inFlight = new Queue<(string EventId, Task Work)>();
        using var slots = new SemaphoreSlim(EventsAtOnce);
        await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
        {
            var e = message.Event;
            await slots.WaitAsync(ct);
            inFlight.Enqueue((e.EventId, HandleAsync(tenant, e, term, slots, ct)));
            while (inFlight.TryPeek(out var head) && head.Work.IsCompleted)
            {
                await head.Work;
                await SaveCursorAsync(tenant, head.EventId, ct);
                inFlight.Dequeue();
            }
        }
        while (inFlight.TryDequeue(out var rest))
        {
            await rest.Work;
            await SaveCursorAsync(tenant, rest.EventId, ct);
        }
    }

    private async Task HandleAsync(string tenant, WorkerEvent e, LeaderTerm term, SemaphoreSlim slots, CancellationToken ct)
    {
        try
        {
            await Task.Yield();
            if (e.Type == WorkerEventType.Lost)
            {
                await RecoverWorkerTasksAsync(tenant, e, term, ct);
            }
        }
        finally
        {
            slots.Release();
        }
    }

    /// <summary>Recovers every task the queue has leased to the lost worker (several at a time).</summary>
    public async Task<int> RecoverWorkerTasksAsync(string tenant, WorkerEvent lost, LeaderTerm term, CancellationToken ct)
    {
        using var activity = Telemetry.RecoveryTelemetry.Source.StartActivity("recovery.worker_lost");
        activity?.SetTag(TaskTrace.TenantTag, tenant);
        activity?.SetTag(TaskTrace.WorkerIdTag, lost.WorkerId);
        using var scope = logger.BeginScope(new TaskScope(tenant, workerId: lost.WorkerId));
        var detectedAt = lost.OccurredAt?.ToDateTime() ?? Time.GetUtcNow().UtcDateTime;
        var held = new List<Queue.V1.Task>();
        foreach (var status in new[] { TaskStatus.Assigned, TaskStatus.Running })
        {
            var token = "";
            do
            {
                var page = await clients.Queue.ListTasksAsync(
                    new ListTasksRequest { Status = status, WorkerId = lost.WorkerId, PageSize = 1000, PageToken = token }, ServiceCall.For(tenant, ct));
                held.AddRange(page.Tasks.Where(t => t.AssignedWorkerId == lost.WorkerId));
                token = page.NextPageToken;
            }
            while (token.Length > 0);
        }
        var recovered = 0;
        await Parallel.ForEachAsync(held, new ParallelOptions { MaxDegreeOfParallelism = TasksAtOnce, CancellationToken = ct }, async (task, token) =>
        {
            var (result, _) = await recoverer.RecoverAsync(tenant, task, RecoveryTrigger.WorkerLost, detectedAt, term, token);
            if (result == RecoveryResult.Recovered)
            {
                Interlocked.Increment(ref recovered);
            }
        });
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

    [LoggerMessage(EventId = 4005, Level = LogLevel.Information, Message = "Worker {WorkerId} (tenant {Tenant}) lost: {Recovered} task(s) recovered")]
    private static partial void LogLost(ILogger logger, string workerId, string tenant, int recovered);
}

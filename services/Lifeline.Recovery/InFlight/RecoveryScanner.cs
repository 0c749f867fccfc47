using Grpc.Core;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Microsoft.Extensions.Options;
using QueueTask = Lifeline.Queue.V1.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Hosting;

namespace Lifeline.Recovery.InFlight;

/// <summary>What one scan did.</summary>
/// <param name="Recoverable">Tasks found recoverable and not recovered, over all covered tenants.</param>
/// <param name="RecoverableByTenant">The same per tenant (tenants with none are absent).</param>
public sealed record ScanResult(
    long Examined, long Recoverable, IReadOnlyDictionary<string, long> RecoverableByTenant, List<ActionRecord> Actions, long SkippedAlive,
    TimeSpan Duration, DateTime At)
{
    /// <summary>Tasks of <paramref name="tenant"/> the scan found recoverable and did not recover.</summary>
    public long RecoverableIn(string tenant) => RecoverableByTenant.GetValueOrDefault(tenant);
}

/// <summary>
/// The level-triggered path: every <c>ScanInterval</c> the leader reads every in-flight and
/// timed-out task of the covered tenants and the registry's workers, and recovers what needs it —
/// holder offline/deregistered/unknown (assigned but never started counts as its own trigger), timed
/// out. Whatever the fast path (lost events) missed — recovery down at the time, a lost event not
/// seen — is caught here. A lease that simply ran out while its holder is alive is not recovery's:
/// the queue's maintenance requeues it (the visibility timeout; the queue's TaskLifecycle gives each
/// transition one owner), so the two never race for it. A scan never acts twice on one lease: the
/// queue refuses a stale token and the action log records one action per lease.
/// </summary>
public sealed partial class RecoveryScanner(
    SuiteClients clients, TaskRecoverer recoverer, [FromKeyedServices(RecoveryLeadership.Role)] LeaderElection leader, CoveredTenants tenants, IOptions<RecoveryOptions> options, TimeProvider time,
    ILogger<RecoveryScanner> logger)
    : LeaderLoop(leader, logger, LoopBackoff.Between(options.Value.ScanInterval, TimeSpan.FromSeconds(30)), time)
{
    private readonly SemaphoreSlim _oneAtATime = new(1, 1);

    /// <summary>The last completed scan (null before the first).</summary>
    public ScanResult? LastScan { get; private set; }

    protected override async Task<TimeSpan> RunTermPassAsync(LeaderTerm term, CancellationToken ct)
    {
        await ScanOnceAsync(ct);
        return options.Value.ScanInterval;
    }

    /// <summary>Runs one scan now; FAILED_PRECONDITION-worthy <see cref="NotLeaderException"/> on a standby.</summary>
    public async Task<ScanResult> ScanOnceAsync(CancellationToken ct)
    {
        var term = Leader.Term ?? throw new NotLeaderException(await Leader.ReadLeaderAsync(ct) is { Current: true } l ? l.Holder : "");
        await _oneAtATime.WaitAsync(ct);
        try
        {
            var started = Time.GetTimestamp();
            var at = Time.GetUtcNow().UtcDateTime;
            long examined = 0, recoverable = 0, skippedAlive = 0;
            var actions = new List<ActionRecord>();
            var left = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var tenant in await tenants.RefreshAsync(ct))
            {
                long tenantRecoverable = 0, tenantRecovered = 0;
                var workers = await LoadWorkersAsync(tenant, ct);
                foreach (var status in new[] { TaskStatus.Assigned, TaskStatus.Running, TaskStatus.Timeout })
                {
                    await foreach (var task in ListAsync(tenant, status, ct))
                    {
                        examined++;
                        if (Classify(task, workers, Time.GetUtcNow().UtcDateTime) is not { } verdict)
                        {
                            skippedAlive++;
                            continue;
                        }
                        recoverable++;
                        tenantRecoverable++;
                        var (result, action) = await recoverer.RecoverAsync(tenant, task, verdict.Trigger, verdict.DetectedAt, term, ct);
                        if (result == RecoveryResult.HolderAlive)
                        {
                            skippedAlive++;
                        }
                        if (result == RecoveryResult.Recovered)
                        {
                            actions.Add(action!);
                            tenantRecovered++;
                        }
                    }
                }
                if (tenantRecoverable > tenantRecovered)
                {
                    left[tenant] = tenantRecoverable - tenantRecovered;
                }
            }
            var scan = new ScanResult(examined, recoverable - actions.Count, left, actions, skippedAlive, Time.GetElapsedTime(started), at);
            LastScan = scan;
            if (actions.Count > 0)
            {
                LogScanned(logger, examined, actions.Count, scan.Duration.TotalMilliseconds);
            }
            return scan;
        }
        finally
        {
            _oneAtATime.Release();
        }
    }

    /// <summary>
    /// Why a task needs recovery and since when; null when its holder is alive — whether or not its lease expired (an expired
    /// lease of a live holder is the queue maintenance's to requeue).
    /// </summary>
    internal (RecoveryTrigger Trigger, DateTime DetectedAt)? Classify(QueueTask task, IReadOnlyDictionary<string, Worker> workers, DateTime now)
    {
        if (task.Status == TaskStatus.Timeout)
        {
            return (RecoveryTrigger.TimedOut, (task.CompletedAt ?? task.UpdatedAt)?.ToDateTime() ?? now);
        }
        var expiresAt = task.LeaseExpiresAt?.ToDateTime();
        var expired = expiresAt is { } e && e <= now;
        var gone = !workers.TryGetValue(task.AssignedWorkerId, out var worker)
            || worker.Status == WorkerStatus.Offline || worker.DeregisteredAt is not null;
        if (!gone)
        {
            return null;
        }
        var detectedAt = expired ? expiresAt!.Value : worker?.UpdatedAt?.ToDateTime() ?? now;
        var unstarted = task.Status == TaskStatus.Assigned && task.AssignedAt is { } assigned && now - assigned.ToDateTime() >= options.Value.UnstartedThreshold;
        return (unstarted ? RecoveryTrigger.NotStarted : expired ? RecoveryTrigger.LeaseExpired : RecoveryTrigger.WorkerGone, detectedAt);
    }

    private async Task<Dictionary<string, Worker>> LoadWorkersAsync(string tenant, CancellationToken ct)
    {
        var workers = new Dictionary<string, Worker>();
        var token = "";
        do
        {
            var page = await clients.Registry.ListWorkersAsync(new ListWorkersRequest { PageSize = 1000, PageToken = token }, ServiceCall.For(tenant, ct));
            foreach (var w in page.Workers)
            {
                workers[w.Id] = w;
            }
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        return workers;
    }

    private async IAsyncEnumerable<QueueTask> ListAsync(string tenant, TaskStatus status, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var token = "";
        do
        {
            var page = await clients.Queue.ListTasksAsync(
                new ListTasksRequest { Status = status, PageSize = options.Value.ScanPageSize, PageToken = token }, ServiceCall.For(tenant, ct));
            foreach (var task in page.Tasks)
            {
                yield return task;
            }
            token = page.NextPageToken;
        }
        while (token.Length > 0);
    }

    [LoggerMessage(EventId = 4003, Level = LogLevel.Information, Message = "Recovery scan: {Examined} in-flight tasks examined, {Recovered} recovered in {Milliseconds:0} ms")]
    private static partial void LogScanned(ILogger logger, long examined, int recovered, double milliseconds);
}

/// <summary>This instance does not hold the leader lease: FAILED_PRECONDITION <c>NOT_LEADER</c>.</summary>
public sealed class NotLeaderException : ServiceDefaults.Errors.PreconditionFailedException
{
    public NotLeaderException(string holder)
        : base("NOT_LEADER", $"This recovery instance is a standby; {(holder.Length > 0 ? $"'{holder}'" : "no instance")} holds the leader lease. Only the leader acts.")
    {
        Metadata["leader_instance"] = holder;
    }
}

using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Registry;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using QueueTask = Lifeline.Queue.V1.Task;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Benchmarks.Scenarios.Recovery;

/// <summary>
/// What the recovery scenarios share: the registry and queue channels and targets, the profile, and the
/// steps every scenario takes — register simulated workers (who then keep beating), lease tasks to them,
/// wait for a recovery instance to lead.
/// </summary>
internal sealed class RecoveryContext(
    RegistryConnection registry, QueueConnection queue, ServiceTarget registryTarget, ServiceTarget queueTarget, RecoveryProfile profile)
{
    private const int RegisterConcurrency = 16;

    public RegistryConnection Registry { get; } = registry;

    public QueueConnection Queue { get; } = queue;

    public ServiceTarget RegistryTarget { get; } = registryTarget;

    public ServiceTarget QueueTarget { get; } = queueTarget;

    public RecoveryProfile Profile { get; } = profile;

    /// <summary>The heartbeat interval the registry gives workers (from RegisterWorker).</summary>
    public TimeSpan HeartbeatInterval { get; private set; } = RecoveryProfile.HeartbeatInterval;

    /// <summary>A heartbeat lives 3 × the interval (the registry's contract).</summary>
    public TimeSpan HeartbeatTtl => HeartbeatInterval * 3;

    public void EnsureServicesRunning()
    {
        RegistryTarget.EnsureServiceRunning();
        QueueTarget.EnsureServiceRunning();
    }

    /// <summary>
    /// Registers every worker of <paramref name="fleet"/> able to run <paramref name="taskType"/> and starts their
    /// keep-alive at the interval the registry answered; false (errors recorded) when any registration failed.
    /// </summary>
    public async Task<bool> RegisterAsync(WorkerFleet fleet, string taskType, CallErrors errors, CancellationToken ct)
    {
        foreach (var chunk in fleet.Workers.Chunk(RegisterConcurrency))
        {
            await Task.WhenAll(chunk.Select(async worker =>
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    var response = await Registry.Registry.RegisterWorkerAsync(Registration(worker.Name, taskType), RegistryConnection.Call(ct));
                    worker.SetRegistered(response.Worker, started);
                    HeartbeatInterval = response.HeartbeatInterval.ToTimeSpan();
                }
                catch (RpcException ex) when (!ct.IsCancellationRequested)
                {
                    errors.Record("RegisterWorker", ex);
                }
            }));
        }

        fleet.StartKeepAlive(HeartbeatInterval);
        return fleet.Workers.All(w => w.Registered);
    }

    /// <summary>
    /// Leases and starts up to <paramref name="count"/> tasks of <paramref name="taskType"/> for one worker (LeaseTasks
    /// start = true, at most <see cref="RecoveryProfile.MaxLeaseBatch"/> per call), stopping early when none is left.
    /// </summary>
    public async Task<List<QueueTask>> LeaseAsync(FleetWorker worker, string taskType, int count, TimeSpan lease, CallErrors errors, CancellationToken ct)
    {
        var leased = new List<QueueTask>(count);
        while (leased.Count < count)
        {
            var request = new LeaseTasksRequest
            {
                WorkerId = worker.Id,
                TaskTypes = { taskType },
                MaxTasks = Math.Min(RecoveryProfile.MaxLeaseBatch, count - leased.Count),
                LeaseDuration = Duration.FromTimeSpan(lease),
                Start = true,
            };
            try
            {
                var response = await Queue.Queue.LeaseTasksAsync(request, QueueConnection.Call(ct));
                if (response.Tasks.Count == 0)
                {
                    break;
                }

                leased.AddRange(response.Tasks);
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record("LeaseTasks", ex);
                break;
            }
        }

        return leased;
    }

    /// <summary>Waits until the recovery instance behind <paramref name="recovery"/> holds the leader lease.</summary>
    public static async Task<GetLeadershipResponse> WaitForLeadershipAsync(RecoveryConnection recovery, ServiceTarget target, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        var timeout = RecoveryProfile.LeaderLease * 5 + TimeSpan.FromSeconds(20);
        var last = "no answer yet";
        while (true)
        {
            target.EnsureServiceRunning();
            try
            {
                var leadership = await recovery.Recovery.GetLeadershipAsync(new GetLeadershipRequest(), RecoveryConnection.Call(ct));
                if (leadership.IsLeader)
                {
                    return leadership;
                }

                last = $"leader '{leadership.LeaderInstance}', this instance '{leadership.ThisInstance}'";
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                last = $"{ex.StatusCode} {ex.Status.Detail}";
            }

            if (deadline.Elapsed > timeout)
            {
                throw new InvalidOperationException(
                    $"The recovery service at {target.Url} did not become leader within {timeout.TotalSeconds:0} s (GetLeadership: {last}).");
            }

            await Task.Delay(100, ct);
        }
    }

    /// <summary>Counts the tenant's tasks of <paramref name="taskType"/> per status (GetQueueStats) and compares with what is expected.</summary>
    public async Task<(bool Ok, string Text)> CheckStoredAsync(string taskType, Queue.V1.TaskStatus status, int expected, CancellationToken ct)
    {
        var stats = await Queue.Queue.GetQueueStatsAsync(new GetQueueStatsRequest { Type = taskType }, QueueConnection.Call(ct));
        var counts = stats.Counts.Where(c => c.Type == taskType).ToDictionary(c => c.Status, c => c.Count);
        var ok = counts.GetValueOrDefault(status) == expected && counts.Count == 1;
        var found = counts.Count == 0 ? "none" : string.Join(", ", counts.OrderBy(c => c.Key).Select(c => $"{c.Value:N0} {Name(c.Key)}"));
        return (ok, ok ? $"{expected:N0} {Name(status)}" : $"stored: {found}; expected {expected:N0} {Name(status)}");
    }

    private static string Name(Queue.V1.TaskStatus status) => status.ToString().ToLowerInvariant();

    private static RegisterWorkerRequest Registration(string name, string taskType) => new()
    {
        Name = name,
        Type = WorkerType.Standalone,
        Capabilities = { taskType },
        Metadata = new WorkerMetadata
        {
            Version = "1.0.0",
            MaxConcurrentTasks = 1_000,
            Resources = new Resources { Cpu = 2, MemoryMb = 4096, DiskMb = 20_480 },
            Location = new Location { Region = "local", Zone = "local-a" },
        },
    };
}

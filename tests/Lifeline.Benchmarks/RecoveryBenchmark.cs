using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios.Recovery;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Benchmarks;

/// <summary>
/// The recovery section of a run: start the registry (1 s heartbeats), the queue (eligibility and liveness
/// through the registry's Redis mirror) and the recovery service (1 s scans, 2 s leader lease) on the durable
/// cluster; warm the worker-death path up, time it, then time scans of a large in-flight set on a second
/// recovery instance that scans only when asked.
/// </summary>
internal static class RecoveryBenchmark
{
    /// <summary>The scan instance's own interval: long enough that only the timed RunRecoveryScan calls scan.</summary>
    private static readonly TimeSpan OnDemandScanInterval = TimeSpan.FromHours(1);

    public static async Task<RecoverySection> RunAsync(RecoveryProfile profile, LocalInfrastructure infrastructure, string tenant, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Recovery (load average {load})");
        await using var registryTarget = await ServiceTarget.StartLocalAsync(ServiceDefinition.RegistryFastHeartbeat, infrastructure, ct);
        await using var queueTarget = await ServiceTarget.StartLocalAsync(ServiceDefinition.QueueWithRegistry(registryTarget.Url), infrastructure, ct);
        Console.WriteLine($"Registry: {registryTarget.Description}");
        Console.WriteLine($"Queue: {queueTarget.Description}");
        using var registry = RegistryConnection.Open(registryTarget.Url, tenant);
        using var queue = QueueConnection.Open(queueTarget.Url, tenant);
        await EnsureReachableAsync(registry, queue, registryTarget, queueTarget, ct);
        var context = new RecoveryContext(registry, queue, registryTarget, queueTarget, profile);
        var memory = new List<MemoryPhase>();
        void RecordMemory(string phase, ServiceMemory? reading)
        {
            if (reading is not null)
            {
                memory.Add(new MemoryPhase(phase, reading));
            }
        }

        var problems = new List<string>();
        var problemCount = 0;
        void CollectProblems(ServiceTarget target)
        {
            problemCount += target.Output?.ProblemCount ?? 0;
            problems.AddRange((target.Output?.Problems() ?? []).Select(line => $"[{target.Definition.Name}] {line}"));
        }

        WorkerDeathResult warmUp, death;
        TargetInfo recoveryInfo;
        var definition = ServiceDefinition.Recovery(queueTarget.Url, registryTarget.Url, tenant, RecoveryProfile.ScanInterval, RecoveryProfile.LeaderLease);
        var recoveryTarget = await ServiceTarget.StartLocalAsync(definition, infrastructure, ct);
        await using (recoveryTarget)
        {
            Console.WriteLine($"Recovery: {recoveryTarget.Description}");
            using var recovery = RecoveryConnection.Open(recoveryTarget.Url, tenant);
            await RecoveryContext.WaitForLeadershipAsync(recovery, recoveryTarget, ct);
            RecordMemory("recovery, leading, idle", recoveryTarget.ReadMemory());

            // The whole path once (registration, leases, lost events, requeue, re-lease), so JIT and pools are warm.
            warmUp = await WorkerDeathScenario.RunAsync(context, recovery, "warmup", profile.WarmUpDeadWorkers, ct);
            Console.WriteLine($"  warm-up    {warmUp.DeadWorkers} workers × {profile.TasksPerDeadWorker} tasks died; " +
                              $"re-leased p50 {warmUp.SinceDeath?.P50Seconds ?? double.NaN:0.00} s after T0  {warmUp.Check}");
            if (!warmUp.Verified)
            {
                throw new InvalidOperationException(
                    $"The recovery warm-up failed, so recovery is not working: {warmUp.Check}\n  " + string.Join("\n  ", warmUp.ErrorDetails));
            }

            death = await WorkerDeathScenario.RunAsync(context, recovery, "dead", profile.DeadWorkers, ct);
            recoveryTarget.EnsureServiceRunning();
            context.EnsureServicesRunning();
            RecordMemory("recovery, after worker death", recoveryTarget.ReadMemory());
            Console.WriteLine($"  recovery   {$"death of {death.DeadWorkers} workers holding {death.Tasks} tasks (TTL {death.TtlSeconds:0.#} s)",-52} " +
                              $"re-lease p50 {death.SinceDeath?.P50Seconds ?? double.NaN:0.00} s, p99 {death.SinceDeath?.P99Seconds ?? double.NaN:0.00} s, " +
                              $"max {death.SinceDeath?.MaxSeconds ?? double.NaN:0.00} s after T0  {death.Check}");
            recoveryInfo = new TargetInfo(recoveryTarget.Url.ToString(), recoveryTarget.Description);
            CollectProblems(recoveryTarget);
        }

        // A second instance that scans only when asked; it takes the leader lease once the first one's runs out.
        var scanDefinition = ServiceDefinition.Recovery(queueTarget.Url, registryTarget.Url, tenant, OnDemandScanInterval, RecoveryProfile.LeaderLease);
        var scanTarget = await ServiceTarget.StartLocalAsync(scanDefinition, infrastructure, ct);
        RecoveryScanResult scan;
        await using (scanTarget)
        {
            Console.WriteLine($"Recovery (scans): {scanTarget.Description}");
            using var recovery = RecoveryConnection.Open(scanTarget.Url, tenant);
            await RecoveryContext.WaitForLeadershipAsync(recovery, scanTarget, ct);
            scan = await RecoveryScanScenario.RunAsync(context, recovery, scanTarget, ct);
            scanTarget.EnsureServiceRunning();
            RecordMemory($"recovery (scans), after scanning {profile.ScanTasks:N0} in-flight tasks", scanTarget.ReadMemory());
            Console.WriteLine($"  recovery   {$"scan of {scan.Tasks:N0} in-flight tasks × {scan.Runs.Count}",-52} " +
                              $"median {scan.MedianSeconds:0.00} s, {scan.TasksPerSecond:N0} tasks/s examined  {scan.Check}");
            CollectProblems(scanTarget);
        }

        CollectProblems(queueTarget);
        CollectProblems(registryTarget);
        return new RecoverySection(
            new TargetInfo(registryTarget.Url.ToString(), registryTarget.Description), new TargetInfo(queueTarget.Url.ToString(), queueTarget.Description),
            recoveryInfo, new TargetInfo(scanTarget.Url.ToString(), scanTarget.Description), load, warmUp, death, scan, memory, problemCount, problems);
    }

    /// <summary>Fails fast, with the reason, when the registry or the queue does not answer.</summary>
    private static async Task EnsureReachableAsync(
        RegistryConnection registry, QueueConnection queue, ServiceTarget registryTarget, ServiceTarget queueTarget, CancellationToken ct)
    {
        try
        {
            await registry.Registry.ListWorkersAsync(new ListWorkersRequest { PageSize = 1 }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The registry service at {registryTarget.Url} does not answer ListWorkers: {ex.StatusCode} {ex.Status.Detail}", ex);
        }

        try
        {
            await queue.Queue.GetQueueStatsAsync(new GetQueueStatsRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The queue service at {queueTarget.Url} does not answer GetQueueStats: {ex.StatusCode} {ex.Status.Detail}", ex);
        }
    }
}

using System.Reflection;

namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// One Lifeline service the benchmark can run as a child process: where its build is, which connection
/// string names its database, and the settings the benchmark gives it (on top of its appsettings.json).
/// </summary>
internal sealed record ServiceDefinition(
    string Name,
    string AssemblyMetadataKey,
    string DatabaseConnectionName,
    string DatabaseNamePrefix,
    IReadOnlyDictionary<string, string> Settings,
    string SettingsDescription)
{
    /// <summary>
    /// The queue, with <c>Queue:WorkerEligibility=None</c>: no registry registers its simulated workers,
    /// and the queue's eligibility gate would refuse them.
    /// </summary>
    public static ServiceDefinition Queue { get; } = new(
        "queue service", "QueueServiceAssembly", "queuedb", "queue_benchmark",
        new Dictionary<string, string> { ["Queue__WorkerEligibility"] = "None" },
        "Queue:WorkerEligibility=None (no registry)");

    /// <summary>The registry with its defaults: heartbeat interval 5 s (TTL 15 s), liveness pass every 1 s, heartbeat flush every 5 s.</summary>
    public static ServiceDefinition Registry { get; } = new(
        "registry service", "RegistryServiceAssembly", "registrydb", "registry_benchmark",
        new Dictionary<string, string>(),
        "Registry defaults: HeartbeatInterval 5 s (TTL 15 s), MonitorInterval 1 s, HeartbeatFlushInterval 5 s, ReconcileInterval 10 s");

    /// <summary>The checkpoint service with its defaults: MaxDeltaChain 32 (deltas against the parent when smaller), state cache 256 MiB.</summary>
    public static ServiceDefinition Checkpoint { get; } = new(
        "checkpoint service", "CheckpointServiceAssembly", "checkpointdb", "checkpoint_benchmark",
        new Dictionary<string, string>(),
        "Checkpoint defaults: MaxDeltaChain 32, ArtifactChunkBytes 1 MiB, StateCacheBytes 256 MiB");

    /// <summary>The checkpoint service storing every checkpoint as a compressed full snapshot: the baseline deltas are measured against.</summary>
    public static ServiceDefinition CheckpointFullSnapshots { get; } = new(
        "checkpoint service (full snapshots)", "CheckpointServiceAssembly", "checkpointdb", "checkpoint_full_benchmark",
        new Dictionary<string, string> { ["Checkpoint__MaxDeltaChain"] = "0" },
        "Checkpoint:MaxDeltaChain=0 (every checkpoint a compressed full snapshot)");

    /// <summary>
    /// The queue as deployed with the registry (<c>Queue:WorkerEligibility=Registry</c>, its default): LeaseTasks
    /// admits only workers the registry's Redis mirror shows registered and capable, and RecoverTask takes a
    /// current lease only from a worker the mirror shows dead. Outcomes are reported to the registry.
    /// </summary>
    public static ServiceDefinition QueueWithRegistry(Uri registryUrl) => new(
        "queue service", "QueueServiceAssembly", "queuedb", "queue_recovery_benchmark",
        new Dictionary<string, string>
        {
            ["Queue__WorkerEligibility"] = "Registry",
            ["services__registry__grpc__0"] = registryUrl.ToString(),
        },
        "Queue:WorkerEligibility=Registry (liveness and capabilities from the registry's Redis mirror)");

    /// <summary>The registry with a 1 s heartbeat interval (TTL 3 s), so a dead worker is declared lost within seconds.</summary>
    public static ServiceDefinition RegistryFastHeartbeat { get; } = new(
        "registry service", "RegistryServiceAssembly", "registrydb", "registry_recovery_benchmark",
        new Dictionary<string, string> { ["Registry__HeartbeatInterval"] = "00:00:01" },
        "Registry:HeartbeatInterval=00:00:01 (TTL 3 s), other settings default");

    /// <summary>
    /// The recovery service covering the run's tenant, talking to the queue and registry (no checkpoint service:
    /// the benchmark's tasks have no workflow), leader lease <paramref name="leaderLease"/>, a scan every <paramref name="scanInterval"/>.
    /// </summary>
    public static ServiceDefinition Recovery(Uri queueUrl, Uri registryUrl, string tenant, TimeSpan scanInterval, TimeSpan leaderLease) => new(
        "recovery service", "RecoveryServiceAssembly", "recoverydb", "recovery_benchmark",
        new Dictionary<string, string>
        {
            ["Recovery__Tenants__0"] = tenant,
            ["Recovery__ScanInterval"] = scanInterval.ToString("c", System.Globalization.CultureInfo.InvariantCulture),
            ["Recovery__LeaderLeaseDuration"] = leaderLease.ToString("c", System.Globalization.CultureInfo.InvariantCulture),
            ["services__queue__grpc__0"] = queueUrl.ToString(),
            ["services__registry__grpc__0"] = registryUrl.ToString(),
        },
        $"Recovery defaults except ScanInterval {Describe(scanInterval)}, LeaderLeaseDuration {Describe(leaderLease)}; " +
        "queue and registry as above, no checkpoint service");

    private static string Describe(TimeSpan interval) =>
        interval >= TimeSpan.FromHours(1) ? $"{interval.TotalHours:0.#} h" : $"{interval.TotalSeconds:0.#} s";

    /// <summary>The backup service; its target and directory are added per run (see <see cref="BackupBenchmark"/>).</summary>
    public static ServiceDefinition Backup { get; } = new(
        "backup service", "BackupServiceAssembly", "backupdb", "backup_benchmark_catalog",
        new Dictionary<string, string>(),
        "Backup defaults: pg_dump custom format, compression 6");

    /// <summary>The service's dll as built with this benchmark (the csproj records its path).</summary>
    public string AssemblyPath =>
        typeof(ServiceDefinition).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == AssemblyMetadataKey)?.Value
        ?? throw new InvalidOperationException($"The benchmark was built without the {AssemblyMetadataKey} metadata (see its csproj).");
}

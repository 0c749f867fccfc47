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

    /// <summary>The service's dll as built with this benchmark (the csproj records its path).</summary>
    public string AssemblyPath =>
        typeof(ServiceDefinition).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == AssemblyMetadataKey)?.Value
        ?? throw new InvalidOperationException($"The benchmark was built without the {AssemblyMetadataKey} metadata (see its csproj).");
}

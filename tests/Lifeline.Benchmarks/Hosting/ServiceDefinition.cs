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

using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Checkpoint;
using Lifeline.Benchmarks.Scenarios.Recovery;
using Lifeline.Benchmarks.Scenarios.Registry;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The service's memory after one phase of the run.</summary>
internal sealed record MemoryPhase(string Phase, ServiceMemory Memory);

/// <summary>Where a section's calls went and what the service was, for the report header.</summary>
internal sealed record TargetInfo(string Url, string Description);

/// <summary>
/// One row with and without the pending backlog: tasks/s (latency rows: the start latency's p99) and CPU per task side by
/// side; <see cref="Within"/> says whether the row stayed within <see cref="QueueTargets.PendingTolerance"/> of itself.
/// </summary>
internal sealed record PendingComparison(
    string Id, string Name, string Measure, double Warm, double Pending, double Ratio, bool? Within, double? WarmCpu, double? PendingCpu);

/// <summary>What the queue section measured: every row of every pass (cold, warm, pending), and the services it ran on.</summary>
/// <param name="Target">The main queue service (raw gRPC rows); null when only worker-library rows ran.</param>
/// <param name="LibraryQueue">The worker-library rows' queue (registry eligibility), registry, and the gateway in this process.</param>
/// <param name="DispatchUnavailable">Why the dispatch rows did not run (UNIMPLEMENTED), if they did not.</param>
/// <param name="WarmUps">The sections' timed warm-ups (the main paths run before the warm rows), with their per-second counts.</param>
internal sealed record QueueSection(
    TargetInfo? Target,
    TargetInfo? LibraryQueue,
    TargetInfo? LibraryRegistry,
    string LoadAverageAtStart,
    string? DispatchUnavailable,
    IReadOnlyList<QueueRow> Rows,
    IReadOnlyList<QueueRow> WarmUps,
    IReadOnlyList<PendingBacklogInfo> PendingBacklogs,
    IReadOnlyList<PendingComparison> PendingComparisons,
    IReadOnlyList<MemoryPhase> Memory,
    int ServiceWarningsAndErrors,
    IReadOnlyList<string> ServiceLogSample)
{
    public bool Verified => Rows.All(r => r.Verified) && PendingBacklogs.All(p => p.Verified);
}

/// <summary>What the registry section measured.</summary>
/// <param name="KeepAliveBeats">Unary beats the fleet's keep-alive sent outside the heartbeat windows (at the registry's interval).</param>
/// <param name="FleetWorkersLost">Lost events of fleet workers, which never stop beating: each one is a false detection.</param>
internal sealed record RegistrySection(
    TargetInfo Target,
    string LoadAverageAtStart,
    RegistrationResult Registration,
    IReadOnlyList<HeartbeatResult> Heartbeats,
    DetectionResult Detection,
    long KeepAliveBeats,
    int KeepAliveErrors,
    IReadOnlyList<string> KeepAliveErrorDetails,
    int FleetWorkersLost,
    IReadOnlyList<MemoryPhase> Memory,
    int ServiceWarningsAndErrors,
    IReadOnlyList<string> ServiceLogSample)
{
    public bool Verified =>
        Registration.Verified && Heartbeats.All(h => h.Verified) && Detection.Verified && KeepAliveErrors == 0 && FleetWorkersLost == 0;
}

/// <summary>What the checkpoint section measured.</summary>
/// <param name="FullSnapshotTarget">The second instance (MaxDeltaChain = 0) the storage comparison used.</param>
internal sealed record CheckpointSection(
    TargetInfo Target,
    TargetInfo FullSnapshotTarget,
    string LoadAverageAtStart,
    IReadOnlyList<CheckpointLatencyResult> Latency,
    CheckpointStorageResult Storage,
    ArtifactTransferResult Artifacts,
    IReadOnlyList<MemoryPhase> Memory,
    int ServiceWarningsAndErrors,
    IReadOnlyList<string> ServiceLogSample)
{
    public bool Verified => Latency.All(l => l.Verified) && Storage.Verified && Artifacts.Verified;
}

/// <summary>What the recovery section measured: re-lease after worker death, and scans of a large in-flight set.</summary>
/// <param name="ScanTarget">The second recovery instance the scans ran on (ScanInterval 1 h: only the timed RunRecoveryScan calls scan).</param>
/// <param name="WarmUp">The worker-death path run once with a few workers before the timed run.</param>
internal sealed record RecoverySection(
    TargetInfo Registry,
    TargetInfo Queue,
    TargetInfo Target,
    TargetInfo ScanTarget,
    string LoadAverageAtStart,
    WorkerDeathResult WarmUp,
    WorkerDeathResult WorkerDeath,
    RecoveryScanResult Scan,
    IReadOnlyList<MemoryPhase> Memory,
    int ServiceWarningsAndErrors,
    IReadOnlyList<string> ServiceLogSample)
{
    public bool Verified => WorkerDeath.Verified && Scan.Verified;
}

/// <summary>One timed operation of the backup section (median of its runs): database MiB per second of wall time.</summary>
internal sealed record BackupTiming(string Operation, double Seconds, long FileBytes, double DatabaseMegabytesPerSecond, IReadOnlyList<double> RunSeconds);

/// <summary>What the backup section measured: the service against raw pg_dump/pg_restore on the same database.</summary>
internal sealed record BackupSection(
    TargetInfo Target,
    string LoadAverageAtStart,
    long DatabaseBytes,
    long Rows,
    IReadOnlyList<BackupTiming> Timings,
    double BackupRatio,
    double RestoreRatio,
    long ChangedRows,
    long IncrementalBytes,
    long FullBytes,
    long IncrementalChanges,
    bool RestoredContentMatches,
    int ServiceWarningsAndErrors,
    IReadOnlyList<string> ServiceLogSample)
{
    public double IncrementalToFull => FullBytes == 0 ? 0 : (double)IncrementalBytes / FullBytes;

    public bool Verified => RestoredContentMatches && IncrementalChanges >= ChangedRows;
}

/// <summary>Everything a run measured; printed as tables and written as JSON.</summary>
internal sealed record BenchmarkReport(
    DateTimeOffset GeneratedAtUtc,
    string Profile,
    string Tenant,
    MachineInfo Machine,
    string LoadAverageAtStart,
    string LoadAverageAtEnd,
    double RunSeconds,
    IReadOnlyDictionary<string, string> PostgresSettings,
    QueueSection? Queue,
    RegistrySection? Registry,
    CheckpointSection? Checkpoint,
    RecoverySection? Recovery,
    BackupSection? Backup)
{
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public bool AllVerified =>
        (Queue?.Verified ?? true) && (Registry?.Verified ?? true) && (Checkpoint?.Verified ?? true) && (Recovery?.Verified ?? true) &&
        (Backup?.Verified ?? true);

    public async Task WriteJsonAsync(string path, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await using var file = File.Create(path);
        await JsonSerializer.SerializeAsync(file, this, JsonOptions, ct);
    }
}

using System.Globalization;

namespace Lifeline.Benchmarks;

/// <summary>How a row's workers take their tasks.</summary>
internal enum TaskPath
{
    /// <summary>LeaseTasks with start = true (max B) → CompleteTask when B = 1, else one CompleteTasks for the batch.</summary>
    LeaseAndStart,

    /// <summary>LeaseTasks (max B) → StartTask for each → CompleteTask / CompleteTasks: the three-call cycle.</summary>
    ThreeCalls,

    /// <summary>QueueService.Dispatch: one stream per worker; tasks pushed leased and started, completed on the stream.</summary>
    Dispatch,

    /// <summary>The .NET worker library (LifelineWorker, default settings) through the gateway, with the registry.</summary>
    WorkerLibrary,
}

/// <summary>
/// A processing row: <paramref name="Workers"/> workers (of <paramref name="Slots"/> slots each for the dispatch stream
/// and the worker library) drain a backlog enqueued before the row, sized for <paramref name="SizingRate"/> tasks/s.
/// </summary>
internal sealed record ProcessingRowSpec(
    string Id, TaskPath Path, int Workers, int BatchSize, double SizingRate, double? TargetRate = null, double? LeaseP99TargetMs = null, int Slots = 1);

/// <summary>An enqueue row: <paramref name="Callers"/> concurrent callers, <paramref name="BatchSize"/> tasks per call (1 = EnqueueTask).</summary>
internal sealed record EnqueueRowSpec(string Id, int Callers, int BatchSize, double TargetRate);

/// <summary>
/// A latency row: <paramref name="Workers"/> idle workers (<paramref name="Slots"/> slots each for the library) wait
/// for work while tasks are enqueued one per EnqueueTask at <paramref name="PerSecond"/>, each carrying the time its
/// call was made; the time to its handler's start is the row's figure.
/// </summary>
internal sealed record StartLatencyRowSpec(string Id, TaskPath Path, int Workers, double PerSecond, bool HasTarget, int Slots = 1);

/// <summary>The goals a throughput issue sets the queue; each row prints its own next to its figure.</summary>
internal static class QueueTargets
{
    /// <summary>LeaseTasks (start, max 1) → CompleteTask, 32 workers; and the worker library with 32 slots.</summary>
    public const double OnePerCall = 3_000;

    /// <summary>LeaseTasks (start) in batches of 50 or 100 → CompleteTasks.</summary>
    public const double Batched = 15_000;

    /// <summary>32 one-slot workers on the dispatch stream.</summary>
    public const double Dispatch = 8_000;

    public const double EnqueueOnePerCall = 4_000;

    public const double EnqueueBatched = 50_000;

    /// <summary>Enqueue → handler start of an idle worker, in milliseconds.</summary>
    public const double StartP50Ms = 5;

    public const double StartP99Ms = 25;

    /// <summary>LeaseTasks p99 at 8 workers, one task per call, in milliseconds.</summary>
    public const double LeaseP99Ms = 10;

    /// <summary>With a large pending backlog, every row within this fraction of its figure without one.</summary>
    public const double PendingTolerance = 0.20;
}

/// <summary>
/// The queue section: every row runs for <paramref name="Window"/> after <paramref name="RowWarmUp"/> (the same workers,
/// untimed); a processing row's backlog is sized for its rate over both, × <paramref name="BacklogHeadroom"/> ×
/// <paramref name="Scale"/>, and what is left when the window ends is cut. The cold row measures the first
/// <paramref name="ColdWindow"/> of a brand-new database and service, with no warm-up. Before the warm rows, each
/// service gets <paramref name="WarmUp"/> (every call once) and <paramref name="SectionWarmUp"/> of its main path: a fresh
/// .NET process needs seconds of steady work before its hot code is fully optimized (tiered JIT), and without it the
/// first row measures the JIT, not the queue. <paramref name="Pending"/> &gt; 0
/// runs every row a second time with that many pending tasks (of another type) in the table. Rows whose id does not
/// start with one of <paramref name="RowFilter"/> (when given) are skipped; "cold" selects the cold row.
/// </summary>
internal sealed record QueueProfile(
    TimeSpan RowWarmUp,
    TimeSpan Window,
    TimeSpan ColdWindow,
    TimeSpan LatencyWindow,
    TimeSpan SectionWarmUp,
    double BacklogHeadroom,
    double Scale,
    IReadOnlyList<FullCycleCase> WarmUp,
    ProcessingRowSpec Cold,
    IReadOnlyList<ProcessingRowSpec> Processing,
    IReadOnlyList<EnqueueRowSpec> Enqueue,
    IReadOnlyList<StartLatencyRowSpec> Latency,
    long Pending,
    IReadOnlyList<string>? RowFilter)
{
    /// <summary>The backlog insert's transaction size (the pending pass).</summary>
    public const int PendingChunk = 100_000;

    public static QueueProfile Full(double scale, long pending, IReadOnlyList<string>? rows) => new(
        RowWarmUp: TimeSpan.FromSeconds(2), Window: TimeSpan.FromSeconds(10), ColdWindow: TimeSpan.FromSeconds(10), LatencyWindow: TimeSpan.FromSeconds(10),
        SectionWarmUp: TimeSpan.FromSeconds(15), BacklogHeadroom: 1.5, Scale: scale,
        WarmUp:
        [
            new(Workers: 4, BatchSize: 1, Producers: 4, EnqueueBatchSize: 1, Tasks: 500),
            new(Workers: 4, BatchSize: 10, Producers: 2, EnqueueBatchSize: 100, Tasks: 2_000),
        ],
        Cold: new("lease-start-w32-b1", TaskPath.LeaseAndStart, Workers: 32, BatchSize: 1, SizingRate: QueueTargets.OnePerCall, TargetRate: QueueTargets.OnePerCall),
        Processing:
        [
            new("lease-start-w32-b1", TaskPath.LeaseAndStart, 32, 1, QueueTargets.OnePerCall, TargetRate: QueueTargets.OnePerCall),
            new("lease-start-w8-b1", TaskPath.LeaseAndStart, 8, 1, QueueTargets.OnePerCall, LeaseP99TargetMs: QueueTargets.LeaseP99Ms),
            // A lone worker: what group commit must not slow down (compare with Queue__GroupCommit=false).
            new("lease-start-w1-b1", TaskPath.LeaseAndStart, 1, 1, SizingRate: 1_000),
            new("three-call-w8-b1", TaskPath.ThreeCalls, 8, 1, QueueTargets.OnePerCall),
            new("three-call-w32-b1", TaskPath.ThreeCalls, 32, 1, QueueTargets.OnePerCall),
            new("lease-start-w32-b50", TaskPath.LeaseAndStart, 32, 50, QueueTargets.Batched, TargetRate: QueueTargets.Batched),
            new("lease-start-w32-b100", TaskPath.LeaseAndStart, 32, 100, QueueTargets.Batched, TargetRate: QueueTargets.Batched),
            new("dispatch-w32", TaskPath.Dispatch, 32, 1, QueueTargets.Dispatch, TargetRate: QueueTargets.Dispatch),
            // The library leases up to its free slots at once and batches its completions: sized for twice its target.
            new("library-32-slots", TaskPath.WorkerLibrary, 1, 1, 2 * QueueTargets.OnePerCall, TargetRate: QueueTargets.OnePerCall, Slots: 32),
        ],
        Enqueue:
        [
            new("enqueue-c32-b1", Callers: 32, BatchSize: 1, QueueTargets.EnqueueOnePerCall),
            new("enqueue-c4-b1000", Callers: 4, BatchSize: 1_000, QueueTargets.EnqueueBatched),
        ],
        Latency:
        [
            new("start-latency-long-poll", TaskPath.LeaseAndStart, Workers: 4, PerSecond: 40, HasTarget: true),
            new("start-latency-dispatch", TaskPath.Dispatch, Workers: 4, PerSecond: 40, HasTarget: true),
            new("start-latency-library", TaskPath.WorkerLibrary, Workers: 1, PerSecond: 40, HasTarget: false, Slots: 32),
        ],
        Pending: pending, RowFilter: rows);

    /// <summary>The same rows, shorter: 1 s warm-up, 3 s windows, 5 s cold window, 4 s section warm-ups.</summary>
    public static QueueProfile Quick(double scale, long pending, IReadOnlyList<string>? rows) => Full(scale, pending, rows) with
    {
        RowWarmUp = TimeSpan.FromSeconds(1), Window = TimeSpan.FromSeconds(3), ColdWindow = TimeSpan.FromSeconds(5), LatencyWindow = TimeSpan.FromSeconds(3),
        SectionWarmUp = TimeSpan.FromSeconds(4),
    };

    /// <summary>How long any one row may take before it is given up (warm-up, window, the wait for its last tasks, checks).</summary>
    public TimeSpan RowTimeout => RowWarmUp + Window + SectionWarmUp + TimeSpan.FromMinutes(2);

    /// <summary>The pass label of the pending pass.</summary>
    public string PendingPass => string.Create(CultureInfo.InvariantCulture, $"pending {Pending:N0}");

    /// <summary>Tasks to enqueue before a processing row that runs at up to <paramref name="rate"/> tasks/s for <paramref name="warmUp"/> + <paramref name="window"/>.</summary>
    public int BacklogFor(double rate, TimeSpan warmUp, TimeSpan window) =>
        Math.Max(2_000, (int)Math.Ceiling(rate * (warmUp + window).TotalSeconds * BacklogHeadroom * Scale / 1_000) * 1_000);

    public bool Selects(string id) => RowFilter is not { Count: > 0 } filter || filter.Any(f => id.StartsWith(f, StringComparison.Ordinal));

    public bool SelectsCold => RowFilter is not { Count: > 0 } filter || filter.Contains("cold");

    /// <summary>Rows on the main queue service (raw gRPC clients), as opposed to the worker-library rows with their own services.</summary>
    public bool AnyDirectRows =>
        SelectsCold || Processing.Any(r => r.Path != TaskPath.WorkerLibrary && Selects(r.Id)) || Enqueue.Any(r => Selects(r.Id)) ||
        Latency.Any(r => r.Path != TaskPath.WorkerLibrary && Selects(r.Id));

    public bool AnyLibraryRows =>
        Processing.Any(r => r.Path == TaskPath.WorkerLibrary && Selects(r.Id)) || Latency.Any(r => r.Path == TaskPath.WorkerLibrary && Selects(r.Id));
}

/// <summary>Producers enqueue <paramref name="Tasks"/> tasks (<paramref name="EnqueueBatchSize"/> per call) while workers process them (the queue section's warm-up).</summary>
internal sealed record FullCycleCase(int Workers, int BatchSize, int Producers, int EnqueueBatchSize, int Tasks);

/// <summary>
/// The registry scenarios: register <paramref name="Workers"/> workers (<paramref name="RegisterCallers"/> concurrent
/// callers), have each beat once per second for <paramref name="UnaryWindow"/> with unary calls, then for
/// <paramref name="StreamWindow"/> on one HeartbeatStream each (each window after an untimed <paramref name="HeartbeatLeadIn"/>) (opened <paramref name="StreamOpenConcurrency"/> at a
/// time), and time the detection of <paramref name="DetectionWorkers"/> workers that stop after
/// <paramref name="DetectionBeats"/> beats, waiting <paramref name="DuplicateWait"/> more for duplicate lost events.
/// </summary>
internal sealed record RegistryProfile(
    int Workers,
    int RegisterCallers,
    TimeSpan HeartbeatLeadIn,
    TimeSpan UnaryWindow,
    TimeSpan StreamWindow,
    int StreamOpenConcurrency,
    int DetectionWorkers,
    int DetectionBeats,
    TimeSpan DuplicateWait,
    int WarmUpWorkers)
{
    /// <summary>The fleet the registry is specified for: 10,000 workers, each beating once per second.</summary>
    public const int DefaultWorkers = 10_000;

    public static RegistryProfile Full { get; } = new(
        DefaultWorkers, RegisterCallers: 64, HeartbeatLeadIn: TimeSpan.FromSeconds(3), UnaryWindow: TimeSpan.FromSeconds(20), StreamWindow: TimeSpan.FromSeconds(20),
        StreamOpenConcurrency: 200, DetectionWorkers: 100, DetectionBeats: 3, DuplicateWait: TimeSpan.FromSeconds(11), WarmUpWorkers: 200);

    /// <summary>The same fleet, shorter windows.</summary>
    public static RegistryProfile Quick { get; } = Full with
    {
        HeartbeatLeadIn = TimeSpan.FromSeconds(1), UnaryWindow = TimeSpan.FromSeconds(5), StreamWindow = TimeSpan.FromSeconds(5),
        DuplicateWait = TimeSpan.FromSeconds(5),
    };
}

/// <summary>One state size of the checkpoint latency scenario: <paramref name="Checkpoints"/> successive checkpoints, each changing 1% of a state of about <paramref name="StateBytes"/>, then as many GetCheckpoint calls.</summary>
internal sealed record CheckpointLatencyCase(string Label, int StateBytes, int Checkpoints);

/// <summary>
/// The checkpoint scenarios: CreateCheckpoint/GetCheckpoint latency per state size; the bytes stored for
/// <paramref name="StorageCheckpoints"/> successive 1% changes of a <paramref name="StorageStateBytes"/> state with deltas versus full
/// snapshots; artifact upload and download of <paramref name="ArtifactBytes"/> in <paramref name="ArtifactChunkBytes"/> chunks, <paramref name="ArtifactRepetitions"/> times.
/// </summary>
internal sealed record CheckpointProfile(
    IReadOnlyList<CheckpointLatencyCase> Latency,
    int WarmUpCheckpoints,
    int StorageCheckpoints,
    int StorageStateBytes,
    int ArtifactBytes,
    int ArtifactChunkBytes,
    int ArtifactRepetitions)
{
    /// <summary>The goal for stored bytes with deltas versus full snapshots.</summary>
    public const double TargetDeltaRatio = 0.10;

    public static CheckpointProfile Full { get; } = new(
        [new("4 KiB", 4 * 1024, 200), new("256 KiB", 256 * 1024, 200), new("4 MiB", 4 * 1024 * 1024, 30)],
        WarmUpCheckpoints: 20, StorageCheckpoints: 100, StorageStateBytes: 256 * 1024,
        ArtifactBytes: 64 * 1024 * 1024, ArtifactChunkBytes: 1024 * 1024, ArtifactRepetitions: 3);

    /// <summary>Fewer calls and a smaller artifact; the storage comparison keeps its 100 checkpoints (it takes seconds).</summary>
    public static CheckpointProfile Quick { get; } = Full with
    {
        Latency = [new("4 KiB", 4 * 1024, 40), new("256 KiB", 256 * 1024, 40), new("4 MiB", 4 * 1024 * 1024, 8)],
        WarmUpCheckpoints = 5, ArtifactBytes = 16 * 1024 * 1024, ArtifactRepetitions = 2,
    };
}

/// <summary>
/// The recovery scenarios. Worker death: <paramref name="DeadWorkers"/> workers each lease
/// <paramref name="TasksPerDeadWorker"/> tasks (started, leases of <paramref name="DeadWorkerLease"/>, far longer than the
/// measurement, so recovery acts because the worker died, not because a lease ran out) and stop beating together; a live
/// rescuer re-leases what recovery requeues, within <paramref name="ReleaseTimeout"/> of the heartbeat TTL; a warm-up round
/// with <paramref name="WarmUpDeadWorkers"/> runs the same path first. Scan: <paramref name="ScanTasks"/> tasks enqueued
/// <paramref name="EnqueueBatchSize"/> per call and leased to <paramref name="ScanHolders"/> live workers, then
/// <paramref name="Scans"/> RunRecoveryScan calls over them.
/// </summary>
internal sealed record RecoveryProfile(
    int DeadWorkers,
    int TasksPerDeadWorker,
    TimeSpan DeadWorkerLease,
    TimeSpan ReleaseTimeout,
    int WarmUpDeadWorkers,
    int ScanTasks,
    int ScanHolders,
    int Scans,
    int EnqueueBatchSize,
    int EnqueueCallers)
{
    /// <summary>Registry heartbeat interval of the recovery section (TTL = 3 ×).</summary>
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(1);

    /// <summary>Recovery's scan interval and leader lease in the worker-death scenario (its other settings stay at their defaults).</summary>
    public static readonly TimeSpan ScanInterval = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan LeaderLease = TimeSpan.FromSeconds(2);

    /// <summary>LeaseTasks allows at most this many tasks per call (queue.proto, LeaseTasksRequest.max_tasks).</summary>
    public const int MaxLeaseBatch = 500;

    public static RecoveryProfile Full { get; } = new(
        DeadWorkers: 100, TasksPerDeadWorker: 2, DeadWorkerLease: TimeSpan.FromSeconds(300), ReleaseTimeout: TimeSpan.FromSeconds(60),
        WarmUpDeadWorkers: 5, ScanTasks: 100_000, ScanHolders: 100, Scans: 3, EnqueueBatchSize: 1_000, EnqueueCallers: 4);

    /// <summary>A fifth of the dead workers, a tenth of the in-flight tasks.</summary>
    public static RecoveryProfile Quick { get; } = Full with { DeadWorkers = 20, ScanTasks = 10_000 };
}

/// <summary>What every section does: quick (a short smoke run) or full.</summary>
internal sealed record BenchmarkProfile(
    string Name,
    QueueProfile Queue,
    RegistryProfile Registry,
    CheckpointProfile Checkpoint,
    RecoveryProfile Recovery)
{
    public static BenchmarkProfile Full(double scale, long pending, IReadOnlyList<string>? rows) =>
        new(Label("full", scale), QueueProfile.Full(scale, pending, rows), RegistryProfile.Full, CheckpointProfile.Full, RecoveryProfile.Full);

    public static BenchmarkProfile Quick(double scale, long pending, IReadOnlyList<string>? rows) =>
        new(Label("quick", scale), QueueProfile.Quick(scale, pending, rows), RegistryProfile.Quick, CheckpointProfile.Quick, RecoveryProfile.Quick);

    private static string Label(string name, double scale) =>
        scale == 1 ? name : string.Create(CultureInfo.InvariantCulture, $"{name} ×{scale}");
}

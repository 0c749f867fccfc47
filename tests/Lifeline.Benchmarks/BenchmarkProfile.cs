namespace Lifeline.Benchmarks;

/// <summary>Enqueue-only: <paramref name="Tasks"/> tasks by <paramref name="Callers"/> concurrent callers, <paramref name="BatchSize"/> per call (1 = EnqueueTask).</summary>
internal sealed record EnqueueCase(int BatchSize, int Callers, int Tasks);

/// <summary>
/// Drain <paramref name="Tasks"/> pre-enqueued tasks with <paramref name="Workers"/> workers leasing <paramref name="BatchSize"/> at a time:
/// lease → StartTask each → complete, or with <paramref name="LeaseAndStart"/> lease-and-start in one
/// LeaseTasks (start = true) → complete.
/// </summary>
internal sealed record ProcessingCase(int Workers, int BatchSize, int Tasks, bool LeaseAndStart = false);

/// <summary>Producers enqueue <paramref name="Tasks"/> tasks (<paramref name="EnqueueBatchSize"/> per call) while workers process them.</summary>
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

/// <summary>
/// The worker-library section: <paramref name="Workers"/> <c>LifelineWorker</c>s of <paramref name="Slots"/> handler slots
/// each; a warm-up of <paramref name="WarmUpTasks"/> tasks, a burst of <paramref name="BurstTasks"/> (all enqueued at once),
/// then <paramref name="PacedDuration"/> of batches of <paramref name="PacedBatchSize"/> at half the burst's rate.
/// </summary>
internal sealed record WorkerLibraryProfile(
    int Workers, int Slots, int WarmUpTasks, int BurstTasks, TimeSpan PacedDuration, int PacedBatchSize, TimeSpan Timeout)
{
    public static WorkerLibraryProfile Full(double scale) => new(
        Workers: 4, Slots: 32, WarmUpTasks: Scaled(1_000, scale), BurstTasks: Scaled(10_000, scale), PacedDuration: TimeSpan.FromSeconds(10),
        PacedBatchSize: 10, Timeout: TimeSpan.FromMinutes(3));

    public static WorkerLibraryProfile Quick(double scale) => Full(scale * 0.2) with { PacedDuration = TimeSpan.FromSeconds(5), Timeout = TimeSpan.FromSeconds(60) };

    private static int Scaled(int tasks, double scale) => Math.Max(100, (int)(tasks * scale) / 100 * 100);
}

/// <summary>
/// How much work each scenario does. The full-run counts are sized so each cell takes roughly 3–10 s on
/// a 2-core machine where client, service, PostgreSQL and Redis share the cores; the quick run does a
/// fifth. <c>--scale</c> multiplies every count (raise it on faster machines so cells do not get too short).
/// </summary>
internal sealed record BenchmarkProfile(
    string Name,
    IReadOnlyList<FullCycleCase> WarmUp,
    IReadOnlyList<EnqueueCase> Enqueue,
    IReadOnlyList<ProcessingCase> Processing,
    IReadOnlyList<FullCycleCase> FullCycle,
    TimeSpan CellTimeout,
    RegistryProfile Registry,
    CheckpointProfile Checkpoint,
    RecoveryProfile Recovery,
    WorkerLibraryProfile WorkerLibrary)
{
    /// <summary>The processing cell whose LeaseTasks/CompleteTask latencies are reported on their own.</summary>
    public static readonly (int Workers, int BatchSize) LatencyCell = (8, 1);

    private static readonly int[] WorkerCounts = [1, 8, 32];
    private static readonly int[] BatchSizes = [1, 10, 50];

    /// <summary>Processing cells that lease and start in one LeaseTasks (start = true), next to the spec'd lease → start → complete rows.</summary>
    private static readonly (int Workers, int BatchSize)[] FusedCells = [(8, 1), (8, 10), (8, 50), (32, 10), (32, 50)];

    public static BenchmarkProfile Full(double scale) =>
        Create(Label("full", scale), scale, TimeSpan.FromMinutes(3), RegistryProfile.Full, CheckpointProfile.Full, RecoveryProfile.Full,
            WorkerLibraryProfile.Full(scale));

    public static BenchmarkProfile Quick(double scale) =>
        Create(Label("quick", scale), scale * 0.2, TimeSpan.FromSeconds(30), RegistryProfile.Quick, CheckpointProfile.Quick, RecoveryProfile.Quick,
            WorkerLibraryProfile.Quick(scale));

    private static string Label(string name, double scale) =>
        scale == 1 ? name : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{name} ×{scale}");

    private static BenchmarkProfile Create(
        string name, double scale, TimeSpan cellTimeout, RegistryProfile registry, CheckpointProfile checkpoint, RecoveryProfile recovery,
        WorkerLibraryProfile workerLibrary)
    {
        int Scaled(int tasks) => Math.Max(20, (int)(tasks * scale));

        FullCycleCase[] warmUp =
        [
            new(Workers: 4, BatchSize: 1, Producers: 4, EnqueueBatchSize: 1, Tasks: Scaled(500)),
            new(Workers: 4, BatchSize: 10, Producers: 2, EnqueueBatchSize: 100, Tasks: Scaled(2_000)),
        ];
        EnqueueCase[] enqueue =
        [
            new(BatchSize: 1, Callers: 16, Tasks: Scaled(3_000)),
            new(BatchSize: 100, Callers: 4, Tasks: Scaled(40_000)),
            new(BatchSize: 1_000, Callers: 4, Tasks: Scaled(60_000)),
        ];
        var processing = WorkerCounts
            .SelectMany(workers => BatchSizes.Select(batch => new ProcessingCase(workers, batch, Scaled(ProcessingTasks(workers, batch)))))
            .Concat(FusedCells.Select(cell => new ProcessingCase(cell.Workers, cell.BatchSize, Scaled(FusedTasks(cell.Workers, cell.BatchSize)), LeaseAndStart: true)))
            .ToArray();
        FullCycleCase[] fullCycle =
        [
            new(Workers: 8, BatchSize: 1, Producers: 8, EnqueueBatchSize: 1, Tasks: Scaled(1_000)),
            new(Workers: 32, BatchSize: 50, Producers: 4, EnqueueBatchSize: 100, Tasks: Scaled(3_000)),
        ];
        return new BenchmarkProfile(name, warmUp, enqueue, processing, fullCycle, cellTimeout, registry, checkpoint, recovery, workerLibrary);
    }

    // Every task costs a LeaseTasks share, a StartTask and a CompleteTask(s) share, each a durable commit:
    // few workers with small batches get through far fewer tasks per second than many with large ones.
    private static int ProcessingTasks(int workers, int batchSize) => (workers, batchSize) switch
    {
        (1, 1) => 200,
        (1, 10) => 500,
        (1, _) => 600,
        (8, 1) => 1_000,
        (8, 10) => 2_000,
        (8, _) => 2_500,
        (_, 1) => 1_000,
        (_, 10) => 2_500,
        _ => 3_000,
    };

    // Without a StartTask per task, batches cost one LeaseTasks and one CompleteTasks commit per batch:
    // large batches get through many more tasks per second, so their cells need more tasks to last a few seconds.
    private static int FusedTasks(int workers, int batchSize) => (workers, batchSize) switch
    {
        (_, 1) => 1_500,
        (8, 10) => 8_000,
        (8, _) => 15_000,
        (_, 10) => 10_000,
        _ => 20_000,
    };
}

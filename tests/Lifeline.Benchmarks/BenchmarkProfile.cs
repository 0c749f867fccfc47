namespace Lifeline.Benchmarks;

/// <summary>Enqueue-only: <paramref name="Tasks"/> tasks by <paramref name="Callers"/> concurrent callers, <paramref name="BatchSize"/> per call (1 = EnqueueTask).</summary>
internal sealed record EnqueueCase(int BatchSize, int Callers, int Tasks);

/// <summary>Drain <paramref name="Tasks"/> pre-enqueued tasks with <paramref name="Workers"/> workers leasing <paramref name="BatchSize"/> at a time.</summary>
internal sealed record ProcessingCase(int Workers, int BatchSize, int Tasks);

/// <summary>Producers enqueue <paramref name="Tasks"/> tasks (<paramref name="EnqueueBatchSize"/> per call) while workers process them.</summary>
internal sealed record FullCycleCase(int Workers, int BatchSize, int Producers, int EnqueueBatchSize, int Tasks);

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
    TimeSpan CellTimeout)
{
    /// <summary>The processing cell whose LeaseTasks/CompleteTask latencies are reported on their own.</summary>
    public static readonly (int Workers, int BatchSize) LatencyCell = (8, 1);

    private static readonly int[] WorkerCounts = [1, 8, 32];
    private static readonly int[] BatchSizes = [1, 10, 50];

    public static BenchmarkProfile Full(double scale) => Create(Label("full", scale), scale, TimeSpan.FromMinutes(3));

    public static BenchmarkProfile Quick(double scale) => Create(Label("quick", scale), scale * 0.2, TimeSpan.FromSeconds(30));

    private static string Label(string name, double scale) =>
        scale == 1 ? name : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{name} ×{scale}");

    private static BenchmarkProfile Create(string name, double scale, TimeSpan cellTimeout)
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
            .ToArray();
        FullCycleCase[] fullCycle =
        [
            new(Workers: 8, BatchSize: 1, Producers: 8, EnqueueBatchSize: 1, Tasks: Scaled(1_000)),
            new(Workers: 32, BatchSize: 50, Producers: 4, EnqueueBatchSize: 100, Tasks: Scaled(3_000)),
        ];
        return new BenchmarkProfile(name, warmUp, enqueue, processing, fullCycle, cellTimeout);
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
}

namespace Lifeline.Benchmarks;

/// <summary>Enqueue-only: <paramref name="Tasks"/> tasks by <paramref name="Callers"/> concurrent callers, <paramref name="BatchSize"/> per call (1 = EnqueueTask).</summary>
internal sealed record EnqueueCase(int BatchSize, int Callers, int Tasks);

/// <summary>Drain <paramref name="Tasks"/> pre-enqueued tasks with <paramref name="Workers"/> workers leasing <paramref name="BatchSize"/> at a time.</summary>
internal sealed record ProcessingCase(int Workers, int BatchSize, int Tasks);

/// <summary>Producers enqueue <paramref name="Tasks"/> tasks (<paramref name="EnqueueBatchSize"/> per call) while workers process them.</summary>
internal sealed record FullCycleCase(int Workers, int BatchSize, int Producers, int EnqueueBatchSize, int Tasks);

/// <summary>How much work each scenario does: sized so a full-run cell takes a few seconds on a small machine.</summary>
internal sealed record BenchmarkProfile(
    string Name,
    IReadOnlyList<EnqueueCase> Enqueue,
    IReadOnlyList<ProcessingCase> Processing,
    IReadOnlyList<FullCycleCase> FullCycle,
    TimeSpan CellTimeout)
{
    /// <summary>The processing cell whose LeaseTasks/CompleteTask latencies are reported on their own.</summary>
    public static readonly (int Workers, int BatchSize) LatencyCell = (8, 1);

    private static readonly int[] WorkerCounts = [1, 8, 32];
    private static readonly int[] BatchSizes = [1, 10, 50];

    public static BenchmarkProfile FullRun { get; } = Create("full", scale: 1, TimeSpan.FromMinutes(3));

    public static BenchmarkProfile QuickRun { get; } = Create("quick", scale: 0.05, TimeSpan.FromSeconds(30));

    private static BenchmarkProfile Create(string name, double scale, TimeSpan cellTimeout)
    {
        int Scaled(int tasks) => Math.Max(100, (int)(tasks * scale));

        EnqueueCase[] enqueue =
        [
            new(BatchSize: 1, Callers: 16, Tasks: Scaled(6_000)),
            new(BatchSize: 100, Callers: 4, Tasks: Scaled(40_000)),
            new(BatchSize: 1_000, Callers: 4, Tasks: Scaled(60_000)),
        ];
        var processing = WorkerCounts
            .SelectMany(workers => BatchSizes.Select(batch => new ProcessingCase(workers, batch, Scaled(batch == 1 ? 5_000 : 20_000))))
            .ToArray();
        FullCycleCase[] fullCycle =
        [
            new(Workers: 8, BatchSize: 1, Producers: 8, EnqueueBatchSize: 1, Tasks: Scaled(5_000)),
            new(Workers: 32, BatchSize: 50, Producers: 4, EnqueueBatchSize: 100, Tasks: Scaled(20_000)),
        ];
        return new BenchmarkProfile(name, enqueue, processing, fullCycle, cellTimeout);
    }
}

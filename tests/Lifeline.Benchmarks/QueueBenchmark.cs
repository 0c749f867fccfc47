using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.FullCycle;
using Lifeline.Benchmarks.Scenarios.Processing;

namespace Lifeline.Benchmarks;

/// <summary>The queue section of a run: start (or reach) the queue service, warm up, run every queue scenario of the profile.</summary>
internal static class QueueBenchmark
{
    public static async Task<QueueSection> RunAsync(
        BenchmarkOptions options, BenchmarkProfile profile, LocalInfrastructure? infrastructure, string tenant, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Queue (load average {load})");
        await using var target = options.QueueUrl is { } url
            ? ServiceTarget.Existing(ServiceDefinition.Queue, url, options.QueuePid)
            : await ServiceTarget.StartLocalAsync(ServiceDefinition.Queue, infrastructure!, ct);
        Console.WriteLine($"Target: {target.Description}");
        using var connection = QueueConnection.Open(target.Url, tenant);
        var context = new ScenarioContext(connection, target, profile);
        var memory = new List<MemoryPhase>();
        void RecordMemory(string phase, ServiceMemory? reading)
        {
            if (reading is not null)
            {
                memory.Add(new MemoryPhase(phase, reading));
            }
        }

        await context.EnsureReachableAsync(ct);
        RecordMemory("idle after start", target.ReadMemory());

        // Warm-up exercises every call (JIT, connection and database pools) before anything is timed.
        for (var i = 0; i < profile.WarmUp.Count; i++)
        {
            var warmUp = await FullCycleScenario.RunAsync(context, profile.WarmUp[i], $"warm-up-{i + 1}", ct);
            Console.WriteLine($"  warm-up    {warmUp.Name,-52} {warmUp.TasksPerSecond,8:0} tasks/s  {Check(warmUp)}");
            if (!warmUp.Verified)
            {
                // Every scenario would fail the same way, each only after its timeout.
                throw new InvalidOperationException(
                    $"The warm-up did not complete its tasks, so the queue service is not working: {warmUp.Check}\n  " +
                    string.Join("\n  ", warmUp.ErrorDetails));
            }
        }

        RecordMemory("after warm-up", target.ReadMemory());
        var results = new List<ScenarioResult>();
        async Task Run(Task<ScenarioResult> scenario)
        {
            var result = await scenario;
            target.EnsureServiceRunning();
            results.Add(result);
            RecordMemory($"after {result.Kind} {result.Name}", result.Memory);
            Console.WriteLine($"  {result.Kind,-10} {result.Name,-52} {result.TasksPerSecond,8:0} tasks/s  {Check(result)}");
        }

        foreach (var cell in profile.Enqueue)
        {
            await Run(EnqueueScenario.RunAsync(context, cell, ct));
        }

        foreach (var cell in profile.Processing)
        {
            await Run(ProcessingScenario.RunAsync(context, cell, ct));
        }

        for (var i = 0; i < profile.FullCycle.Count; i++)
        {
            await Run(FullCycleScenario.RunAsync(context, profile.FullCycle[i], $"full-cycle-{i + 1}", ct));
        }

        return new QueueSection(
            new TargetInfo(target.Url.ToString(), target.Description), load, results, LatencyOf(results), memory,
            target.Output?.ProblemCount ?? 0, target.Output?.Problems() ?? []);
    }

    private static string Check(ScenarioResult result) =>
        result.Errors == 0 ? result.Check : $"{result.Check}; {result.Errors} failed calls";

    private static LatencyReport? LatencyOf(IReadOnlyList<ScenarioResult> results)
    {
        var (workers, batchSize) = BenchmarkProfile.LatencyCell;
        var cell = results.FirstOrDefault(r => r.Kind == ProcessingScenario.Kind && r.Workers == workers && r.BatchSize == batchSize);
        return cell is null
            ? null
            : new LatencyReport(cell.Name, cell.Latencies.GetValueOrDefault(QueueWorker.LeaseCall), cell.Latencies.GetValueOrDefault(QueueWorker.CompleteCall));
    }
}

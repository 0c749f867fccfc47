using System.Diagnostics;
using System.Globalization;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.FullCycle;
using Lifeline.Benchmarks.Scenarios.Processing;

namespace Lifeline.Benchmarks;

/// <summary>One benchmark run: set up the target, warm up, run every scenario of the profile, report.</summary>
internal static class BenchmarkRun
{
    public static async Task<int> ExecuteAsync(BenchmarkOptions options, CancellationToken ct)
    {
        var profile = options.Profile;
        var machine = MachineInfo.Collect();
        var loadAtStart = MachineInfo.LoadAverage();
        var clock = Stopwatch.StartNew();
        // A tenant of its own: the run never sees, nor disturbs, other tasks of an existing service.
        var tenant = string.Create(CultureInfo.InvariantCulture, $"bench-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Random.Shared.Next(0x10000):x4}");
        Console.WriteLine($"Lifeline queue benchmark, {profile.Name} run");
        Console.WriteLine($"Machine: {machine}; load average {loadAtStart}");
        try
        {
            if (options.QueueUrl is null)
            {
                Console.WriteLine("Starting PostgreSQL (durable settings), Redis and the queue service…");
            }

            await using var target = options.QueueUrl is { } url
                ? QueueTarget.Existing(url, options.QueuePid)
                : await QueueTarget.StartLocalAsync(ct);
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
                        $"The warm-up did not complete its tasks, so the service is not working: {warmUp.Check}\n  " +
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

            var report = new BenchmarkReport(
                DateTimeOffset.UtcNow, profile.Name, tenant, machine, loadAtStart, MachineInfo.LoadAverage(), clock.Elapsed.TotalSeconds,
                new TargetInfo(target.Url.ToString(), target.Description, target.PostgresSettings),
                results, LatencyOf(results), memory,
                target.Output?.ProblemCount ?? 0, target.Output?.Problems() ?? []);
            ConsoleReport.Write(report, Console.Out);
            await report.WriteJsonAsync(options.JsonPath, ct);
            Console.WriteLine($"JSON: {options.JsonPath}");
            return report.AllVerified ? 0 : 1;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            Console.Error.WriteLine("Cancelled.");
            return 130;
        }
        catch (Exception ex) when (ex is InvalidOperationException or FileNotFoundException or TimeoutException)
        {
            // Setup failures and a dead service: the message says what happened; a stack trace would not help.
            Console.Error.WriteLine($"Benchmark aborted: {ex.Message}");
            return 1;
        }
    }

    private static string Check(ScenarioResult result) =>
        result.Errors == 0 ? result.Check : $"{result.Check}; {result.Errors} failed calls";

    private static LatencyReport? LatencyOf(IReadOnlyList<ScenarioResult> results)
    {
        var (workers, batchSize) = BenchmarkProfile.LatencyCell;
        var cell = results.FirstOrDefault(r => r.Kind == "processing" && r.Workers == workers && r.BatchSize == batchSize);
        return cell is null
            ? null
            : new LatencyReport(cell.Name, cell.Latencies.GetValueOrDefault(QueueWorker.LeaseCall), cell.Latencies.GetValueOrDefault(QueueWorker.CompleteCall));
    }
}

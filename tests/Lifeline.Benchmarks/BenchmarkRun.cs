using System.Diagnostics;
using System.Globalization;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;

namespace Lifeline.Benchmarks;

/// <summary>One benchmark run: set up PostgreSQL and Redis when needed, run the queue, registry, checkpoint and/or recovery sections, report.</summary>
internal static class BenchmarkRun
{
    public static async Task<int> ExecuteAsync(BenchmarkOptions options, CancellationToken ct)
    {
        var profile = options.Profile;
        var machine = MachineInfo.Collect();
        var loadAtStart = MachineInfo.LoadAverage();
        var clock = Stopwatch.StartNew();
        // A tenant of its own: the run never sees, nor disturbs, other tasks or workers of an existing service.
        var tenant = string.Create(CultureInfo.InvariantCulture, $"bench-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Random.Shared.Next(0x10000):x4}");
        var services = options.Only == "all" ? "queue (with the worker library), registry, checkpoint, recovery and backup" : options.Only;
        Console.WriteLine($"Lifeline benchmark ({services}), {profile.Name} run");
        Console.WriteLine($"Machine: {machine}; load average {loadAtStart}");
        try
        {
            var needsLocal = (options.RunQueue && (options.QueueUrl is null || profile.Queue.AnyLibraryRows)) ||
                             (options.RunRegistry && options.RegistryUrl is null) || options.RunCheckpoint || options.RunRecovery || options.RunBackup;
            if (needsLocal)
            {
                Console.WriteLine("Starting PostgreSQL (durable settings) and Redis…");
            }

            // Each service gets a database of its own on the one cluster, and shares the one Redis.
            await using var infrastructure = needsLocal ? await LocalInfrastructure.StartAsync(ct) : null;
            // The queue service is stopped before the registry's section starts, so they never compete.
            var queue = options.RunQueue ? await QueueBenchmark.RunAsync(options, profile.Queue, infrastructure, tenant, ct) : null;
            var registry = options.RunRegistry ? await RegistryBenchmark.RunAsync(options, profile.Registry, infrastructure, tenant, ct) : null;
            var checkpoint = options.RunCheckpoint ? await CheckpointBenchmark.RunAsync(profile.Checkpoint, infrastructure!, tenant, ct) : null;
            var recovery = options.RunRecovery ? await RecoveryBenchmark.RunAsync(profile.Recovery, infrastructure!, tenant, ct) : null;
            var backup = options.RunBackup ? await BackupBenchmark.RunAsync(options, infrastructure!, ct) : null;

            var report = new BenchmarkReport(
                DateTimeOffset.UtcNow, profile.Name, tenant, machine, loadAtStart, MachineInfo.LoadAverage(), clock.Elapsed.TotalSeconds,
                infrastructure?.PostgresSettings ?? new Dictionary<string, string>(), queue, registry, checkpoint, recovery, backup);
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
}

using System.Security.Cryptography;
using System.Text;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios.WorkerLibrary;
using Lifeline.Gateway;
using Lifeline.Gateway.Routing;
using Lifeline.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.Benchmarks;

/// <summary>
/// The worker-library section: the queue driven through the .NET worker library (<c>LifelineWorker</c> instances), as
/// an application would run it — registry and queue (registry eligibility) as processes on the durable cluster, the
/// gateway in this process with a worker API key, workers in this process talking to the gateway. A warm-up, a burst
/// (throughput) and a paced run (latency without a backlog).
/// </summary>
internal static class WorkerLibraryBenchmark
{
    private const int EnqueueBatchSize = 100;

    public static async Task<WorkerLibrarySection> RunAsync(WorkerLibraryProfile profile, LocalInfrastructure infrastructure, string tenant, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Worker library (load average {load})");
        await using var registryTarget = await ServiceTarget.StartLocalAsync(ServiceDefinition.Registry, infrastructure, ct);
        await using var queueTarget = await ServiceTarget.StartLocalAsync(ServiceDefinition.QueueWithRegistry(registryTarget.Url), infrastructure, ct);
        Console.WriteLine($"Registry: {registryTarget.Description}");
        Console.WriteLine($"Queue: {queueTarget.Description}");
        var apiKey = $"llk_bench_{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))}";
        var gatewayLogs = new CapturedLogs();
        await using var gateway = await StartGatewayAsync(queueTarget.Url, registryTarget.Url, tenant, apiKey, gatewayLogs, ct);
        var gatewayUrl = gateway.Services.GetRequiredService<GatewayEndpoints>().Grpc;
        Console.WriteLine($"Gateway: in this process at {gatewayUrl} (rate limit off)");
        using var queue = QueueConnection.Open(queueTarget.Url, tenant);

        string[] types = ["lib-warmup", "lib-burst", "lib-paced"];
        await using var workers = await LibraryWorkers.StartAsync(gatewayUrl, apiKey, types, "bench-lib", profile.Workers, profile.Slots, ct);
        var warmUp = await WorkerLibraryScenario.RunBurstAsync(queue, workers, types[0], profile.Slots, profile.WarmUpTasks, EnqueueBatchSize, profile.Timeout, ct);
        Print("warm-up", warmUp);
        if (!warmUp.Verified)
        {
            throw new InvalidOperationException($"The worker-library warm-up failed: {warmUp.Check}\n  " +
                string.Join("\n  ", warmUp.ErrorDetails.Concat(workers.Logs.Entries.Select(e => e.Message).TakeLast(10))));
        }

        var burst = await WorkerLibraryScenario.RunBurstAsync(queue, workers, types[1], profile.Slots, profile.BurstTasks, EnqueueBatchSize, profile.Timeout, ct);
        Print("burst", burst);
        queueTarget.EnsureServiceRunning();
        // Half the burst rate: the workers keep up, so the latency is the library's and the services', not a backlog's.
        var rate = Math.Max(50, Math.Round(burst.TasksPerSecond / 2 / 10) * 10);
        var paced = await WorkerLibraryScenario.RunPacedAsync(
            queue, workers, types[2], profile.Slots, rate, profile.PacedDuration, profile.PacedBatchSize, profile.Timeout, ct);
        Print("paced", paced);
        queueTarget.EnsureServiceRunning();
        registryTarget.EnsureServiceRunning();

        var problems = workers.Logs.AtLeast(LogLevel.Warning).Select(e => $"[worker] {e.Message}")
            // The gateway warns at start about the services this section does not run (checkpoint, recovery, backup).
            .Concat(gatewayLogs.AtLeast(LogLevel.Warning).Where(e => !e.Message.StartsWith("Not routing", StringComparison.Ordinal))
                .Select(e => $"[gateway] {e.Message}"))
            .Concat((queueTarget.Output?.Problems() ?? []).Select(line => $"[queue] {line}"))
            .Concat((registryTarget.Output?.Problems() ?? []).Select(line => $"[registry] {line}"))
            .ToList();
        return new WorkerLibrarySection(
            new TargetInfo(queueTarget.Url.ToString(), queueTarget.Description), new TargetInfo(registryTarget.Url.ToString(), registryTarget.Description),
            load, profile.Workers, profile.Slots, warmUp, burst, paced, problems.Count, [.. problems.Take(20)]);
    }

    private static void Print(string name, WorkerLibraryResult r) =>
        Console.WriteLine($"  library    {$"{name}: {r.Workers} workers × {r.Slots} slots, {r.Tasks:N0} tasks",-52} {r.TasksPerSecond,8:0} tasks/s  " +
                          $"enqueue→complete p50 {1000 * (r.EnqueueToComplete?.P50Seconds ?? double.NaN):0} ms, " +
                          $"p99 {1000 * (r.EnqueueToComplete?.P99Seconds ?? double.NaN):0} ms  {r.Check}");

    private static async Task<WebApplication> StartGatewayAsync(Uri queue, Uri registry, string tenant, string apiKey, CapturedLogs logs, CancellationToken ct)
    {
        var config = new Dictionary<string, string?>
        {
            ["services:queue:grpc:0"] = queue.ToString(),
            ["services:registry:grpc:0"] = registry.ToString(),
            ["Gateway:GrpcEndpoint"] = "127.0.0.1:0",
            ["Gateway:RestEndpoint"] = "127.0.0.1:0",
            ["Gateway:RateLimit:PermitsPerSecond"] = "0",
            ["Gateway:ApiKeys:0:Name"] = "bench-worker",
            ["Gateway:ApiKeys:0:Tenant"] = tenant,
            ["Gateway:ApiKeys:0:Role"] = "worker",
            ["Gateway:ApiKeys:0:Sha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(apiKey))),
        };
        foreach (var (name, value) in TestIdentity.Settings)
        {
            config[name] = value;
        }

        var gateway = GatewayApplication.Build([], b =>
        {
            b.Configuration.AddInMemoryCollection(config);
            b.Logging.ClearProviders();
            b.Logging.AddProvider(logs);
            b.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        try
        {
            await gateway.StartAsync(ct);
            return gateway;
        }
        catch
        {
            await gateway.DisposeAsync();
            throw;
        }
    }
}

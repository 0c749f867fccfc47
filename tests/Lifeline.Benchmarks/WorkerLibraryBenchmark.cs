using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Latency;
using Lifeline.Benchmarks.Scenarios.Processing;
using Lifeline.Gateway;
using Lifeline.Gateway.Routing;
using Lifeline.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.Benchmarks;

/// <summary>
/// The queue's worker-library rows: the queue driven through the .NET worker library (<c>LifelineWorker</c>, default
/// settings), as an application would run it — registry and queue (registry eligibility, its default) as processes on
/// the durable cluster, the gateway in this process with a worker API key, workers in this process talking to the
/// gateway. The same rules as the other rows (backlog, warm-up, window, cut, exactly-once check, CPU per task: here the
/// client is this process with the gateway and the library, the services the queue and the registry), so the rows sit in
/// the same tables; every call pays two more hops (gateway) and the eligibility check than the raw rows.
/// </summary>
internal static class WorkerLibraryBenchmark
{
    /// <summary>The section's outcome beyond its rows: the services it ran on, and their warnings.</summary>
    public sealed record Outcome(TargetInfo Queue, TargetInfo Registry, IReadOnlyList<string> Problems);

    public static async Task<Outcome> RunAsync(
        QueueProfile profile, LocalInfrastructure infrastructure, string tenant, List<QueueRow> rows, List<QueueRow> warmUps,
        List<PendingBacklogInfo> backlogs, CancellationToken ct)
    {
        Console.WriteLine($"Worker library (load average {MachineInfo.LoadAverage()})");
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
        var workerLogs = new CapturedLogs();
        var context = new ScenarioContext(
            queue, queueTarget, profile, QueueBenchmark.WarmPass, new QueueDatabase(queueTarget.DatabaseConnectionString!),
            queueTarget.CpuSources.WithServicesOf(registryTarget.CpuSources))
        {
            Library = new LibraryAccess(gatewayUrl, apiKey, workerLogs),
        };

        // The library's main path for a while (fresh queue, registry and gateway: the JIT first), then the rows.
        var warmUp = await ProcessingScenario.RunAsync(
            context with { Pass = QueueBenchmark.WarmUpPass }, profile.Processing.First(r => r.Path == TaskPath.WorkerLibrary), RowMode.SectionWarmUp, ct);
        warmUps.Add(warmUp);
        QueueBenchmark.PrintWarmUp(warmUp);
        await RunPassAsync(context, rows, queueTarget, registryTarget, ct);
        if (profile.Pending > 0)
        {
            context = context with { Pass = profile.PendingPass };
            var backlog = await PendingBacklog.InsertAsync(context, "library queue", ct);
            backlogs.Add(backlog);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  pending    {backlog.Tasks:N0} tasks of type '{backlog.TaskType}' inserted in {backlog.InsertSeconds:0} s, settled in " +
                $"{backlog.SettleSeconds:0} s; GetQueueStats counts {backlog.StoredPending:N0} pending"));
            await RunPassAsync(context, rows, queueTarget, registryTarget, ct);
        }

        var problems = workerLogs.AtLeast(LogLevel.Warning).Select(e => $"[worker] {e.Message}")
            // The gateway warns at start about the services this section does not run (checkpoint, recovery, backup).
            .Concat(gatewayLogs.AtLeast(LogLevel.Warning).Where(e => !e.Message.StartsWith("Not routing", StringComparison.Ordinal))
                .Select(e => $"[gateway] {e.Message}"))
            .Concat((queueTarget.Output?.Problems() ?? []).Select(line => $"[library queue] {line}"))
            .Concat((registryTarget.Output?.Problems() ?? []).Select(line => $"[registry] {line}"))
            .ToList();
        return new Outcome(new TargetInfo(queueTarget.Url.ToString(), queueTarget.Description),
            new TargetInfo(registryTarget.Url.ToString(), registryTarget.Description), problems);
    }

    private static async Task RunPassAsync(
        ScenarioContext context, List<QueueRow> rows, ServiceTarget queue, ServiceTarget registry, CancellationToken ct)
    {
        var profile = context.Profile;
        if (!HostSpeed.Probed)
        {
            // Run alone (--only worker-library): the rows' "host after" is against a probe before them, as in the queue section.
            Console.WriteLine($"  host       speed probed (the rows' \"host after\" is against this): {HostSpeed.Probe().Absolute}");
        }
        async Task Run(Task<QueueRow> running)
        {
            var row = (await running) with { HostAfter = HostSpeed.Probe() };
            queue.EnsureServiceRunning();
            registry.EnsureServiceRunning();
            rows.Add(row);
            QueueBenchmark.Print(row);
        }

        foreach (var spec in profile.Processing.Where(r => r.Path == TaskPath.WorkerLibrary && profile.Selects(r.Id)))
        {
            await Run(ProcessingScenario.RunAsync(context, spec, RowMode.Warm, ct));
        }

        foreach (var spec in profile.Latency.Where(r => r.Path == TaskPath.WorkerLibrary && profile.Selects(r.Id)))
        {
            await Run(StartLatencyScenario.RunAsync(context, spec, ct));
        }
    }

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

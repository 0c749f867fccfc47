using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>What every registry scenario needs: the shared channel, the target, the profile, the simulated workers.</summary>
internal sealed class RegistryContext(RegistryConnection connection, ServiceTarget target, RegistryProfile profile, WorkerFleet fleet)
{
    public const string Capability = "bench.task";

    public RegistryConnection Connection { get; } = connection;

    public ServiceTarget Target { get; } = target;

    public RegistryProfile Profile { get; } = profile;

    public WorkerFleet Fleet { get; } = fleet;

    /// <summary>PostgreSQL counters of the registry's database, when this run started the registry.</summary>
    public PostgresActivity? Postgres { get; } =
        target.DatabaseConnectionString is { } db ? new PostgresActivity(db, connection.Tenant) : null;

    /// <summary>The heartbeat interval the registry tells workers to keep (from RegisterWorker).</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A heartbeat lives 3 × the interval (the registry's contract).</summary>
    public TimeSpan HeartbeatTtl => HeartbeatInterval * 3;

    /// <summary>Fails fast, with the reason, when the service does not answer at all.</summary>
    public async Task EnsureReachableAsync(CancellationToken ct)
    {
        try
        {
            await Connection.Registry.ListWorkersAsync(new ListWorkersRequest { PageSize = 1 }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The registry service at {Target.Url} does not answer ListWorkers: {ex.StatusCode} {ex.Status.Detail}", ex);
        }
    }

    public static RegisterWorkerRequest Registration(string name) => new()
    {
        Name = name,
        Type = WorkerType.Standalone,
        Capabilities = { Capability },
        Metadata = new WorkerMetadata
        {
            Version = "1.0.0",
            MaxConcurrentTasks = 4,
            Resources = new Resources { Cpu = 2, MemoryMb = 4096, DiskMb = 20_480 },
            Location = new Location { Region = "local", Zone = "local-a" },
        },
    };

    /// <summary>Counts the tenant's workers in <paramref name="status"/> whose names start with <paramref name="prefix"/> (ListWorkers, pages of 1,000).</summary>
    public async Task<int> CountWorkersAsync(WorkerStatus status, string prefix, CancellationToken ct)
    {
        var count = 0;
        var request = new ListWorkersRequest { Status = status, PageSize = 1000 };
        do
        {
            var page = await Connection.Registry.ListWorkersAsync(request, RegistryConnection.Call(ct));
            count += page.Workers.Count(w => w.Name.StartsWith(prefix, StringComparison.Ordinal));
            request.PageToken = page.NextPageToken;
        }
        while (request.PageToken.Length > 0);

        return count;
    }
}

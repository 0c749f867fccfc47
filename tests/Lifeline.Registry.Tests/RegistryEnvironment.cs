using Lifeline.Queue;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.Testing;

namespace Lifeline.Registry.Tests;

/// <summary>
/// A test class's own registry database, queue database and Redis, with a registry instance (more on
/// demand) and a queue instance wired to it as in production: the queue checks workers in the
/// registry's Redis mirror and reports outcomes to the registry.
/// Short intervals keep the tests fast: heartbeat 1 s (TTL 3 s), lapse checks every 100 ms.
/// </summary>
public sealed class RegistryEnvironment() : ServiceTestEnvironment("registry")
{
    public static readonly Dictionary<string, string?> FastSettings = new()
    {
        ["Registry:HeartbeatInterval"] = "00:00:01",
        ["Registry:MonitorInterval"] = "00:00:00.100",
        ["Registry:ReconcileInterval"] = "00:00:01",
        ["Registry:HeartbeatFlushInterval"] = "00:00:00.500",
        ["Registry:BreakerFailureThreshold"] = "3",
        ["Registry:BreakerOpenDuration"] = "00:00:02",
        ["Registry:WatchPollInterval"] = "00:00:00.050",
        ["Registry:RetentionInterval"] = "01:00:00",
    };

    private readonly List<ServiceHost> _hosts = [];
    private readonly List<ServiceHost> _registries = [];

    public ServiceHost Registry { get; private set; } = null!;
    public ServiceHost Queue { get; private set; } = null!;
    public string QueueDatabase { get; private set; } = "";

    protected override async Task OnInitializedAsync()
    {
        Registry = await StartRegistryAsync();
        QueueDatabase = await Postgres.CreateDatabaseAsync("queue_for_registry");
        Queue = await StartQueueAsync();
    }

    /// <summary>Starts a registry instance on this environment's database and Redis.</summary>
    public async Task<ServiceHost> StartRegistryAsync(IDictionary<string, string?>? settings = null)
    {
        var config = new Dictionary<string, string?>(FastSettings)
        {
            ["ConnectionStrings:registrydb"] = DatabaseConnectionString,
            ["ConnectionStrings:redis"] = RedisConnectionString,
        };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
        var host = await ServiceHost.StartAsync(RegistryApplication.Build, config);
        _hosts.Add(host);
        _registries.Add(host);
        return host;
    }

    /// <summary>Stops every registry instance started so far (as an outage of the whole registry would).</summary>
    public async Task StopRegistriesAsync()
    {
        foreach (var registry in _registries)
        {
            await registry.StopAsync();
        }
    }

    /// <summary>Starts a queue instance that checks workers against the registry and reports outcomes to it.</summary>
    public async Task<ServiceHost> StartQueueAsync()
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:queuedb"] = QueueDatabase,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["services:registry:grpc:0"] = Registry.Address.ToString(),
            ["Queue:MaintenanceInterval"] = "00:00:00.100",
            ["Queue:LeasePollInterval"] = "00:00:00.250",
            ["Queue:OutcomeReportInterval"] = "00:00:00.100",
        };
        var host = await ServiceHost.StartAsync(QueueApplication.Build, config);
        _hosts.Add(host);
        return host;
    }

    protected override async Task OnDisposingAsync()
    {
        foreach (var host in _hosts)
        {
            await host.DisposeAsync();
        }
        if (QueueDatabase.Length > 0)
        {
            await Postgres.DropDatabaseAsync(QueueDatabase);
        }
    }


    public Task<long> CountEventsAsync(Guid workerId, string type) =>
        ScalarAsync<long>("SELECT count(*) FROM worker_events WHERE worker_id = @id AND event_type = @type", ("id", workerId), ("type", type));
}

/// <summary>Registry and queue clients of a running instance.</summary>
public static class HostClients
{
    public static RegistryService.RegistryServiceClient Registry(this ServiceHost host, string tenant = "default") => new(host.ForTenant(tenant));

    public static QueueService.QueueServiceClient Queue(this ServiceHost host, string tenant = "default") => new(host.ForTenant(tenant));
}

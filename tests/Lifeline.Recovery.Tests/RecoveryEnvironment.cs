using Lifeline.Checkpoint;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry;
using Lifeline.Registry.V1;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// The suite recovery works with, in the test process: a registry, a queue wired to it (eligibility
/// from the registry's Redis mirror), a checkpoint service and a recovery instance, each on its own
/// database of the shared cluster, all on this class's own Redis. Short intervals keep tests fast:
/// heartbeat 1 s (TTL 3 s), recovery lease 1.5 s, scans every 500 ms. More recovery instances
/// (standbys) on demand.
/// </summary>
public class RecoveryEnvironment() : ServiceTestEnvironment("recovery")
{
    public static readonly Dictionary<string, string?> FastRecovery = new()
    {
        ["Recovery:LeaderLeaseDuration"] = "00:00:01.500",
        ["Recovery:ScanInterval"] = "00:00:00.500",
        ["Recovery:UnstartedThreshold"] = "00:00:02",
        ["Recovery:StateSnapshotInterval"] = "00:00:01",
        ["Recovery:TimeoutGrace"] = "00:00:00.500",
        ["Recovery:WebhookInitialBackoff"] = "00:00:00.100",
        ["Recovery:WebhookMaxBackoff"] = "00:00:01",
        ["Recovery:WebhookPollInterval"] = "00:00:00.100",
        ["Recovery:Tenants:0"] = "default",
        ["Recovery:Tenants:1"] = "acme",
        // Each test names the tenants its instances cover (a consistency scene's own tenant must not be recovered by
        // the class's leader behind the check's back); TenantDiscoveryTests turns discovery, the default, back on.
        ["Recovery:DiscoverTenants"] = "false",
    };

    /// <summary>Settings of the class's first recovery instance (the leader) over <see cref="FastRecovery"/>.</summary>
    protected virtual IDictionary<string, string?>? LeaderSettings => null;

    private readonly List<ServiceHost> _hosts = [];

    public ServiceHost Registry { get; private set; } = null!;
    public ServiceHost Queue { get; private set; } = null!;
    public ServiceHost Checkpoint { get; private set; } = null!;
    public ServiceHost Recovery { get; private set; } = null!;
    public string RegistryDatabase { get; private set; } = "";
    public string QueueDatabase { get; private set; } = "";
    public string CheckpointDatabase { get; private set; } = "";

    /// <summary>This class's recovery database (the fixture's own).</summary>
    public string RecoveryDatabase => DatabaseConnectionString;

    protected override async Task OnInitializedAsync()
    {
        RegistryDatabase = await Postgres.CreateDatabaseAsync("registry_for_recovery");
        QueueDatabase = await Postgres.CreateDatabaseAsync("queue_for_recovery");
        CheckpointDatabase = await Postgres.CreateDatabaseAsync("checkpoint_for_recovery");
        Registry = await StartAsync(RegistryApplication.Build, new()
        {
            ["ConnectionStrings:registrydb"] = RegistryDatabase,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["Registry:HeartbeatInterval"] = "00:00:01",
            ["Registry:MonitorInterval"] = "00:00:00.100",
            ["Registry:ReconcileInterval"] = "00:00:01",
            ["Registry:HeartbeatFlushInterval"] = "00:00:00.500",
            ["Registry:WatchPollInterval"] = "00:00:00.050",
        });
        Queue = await StartQueueAsync();
        Checkpoint = await StartAsync(CheckpointApplication.Build, new()
        {
            ["ConnectionStrings:checkpointdb"] = CheckpointDatabase,
        });
        Recovery = await StartRecoveryAsync(LeaderSettings);
    }

    /// <summary>A queue instance wired to the registry (more than one for race tests).</summary>
    public Task<ServiceHost> StartQueueAsync(IDictionary<string, string?>? settings = null)
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:queuedb"] = QueueDatabase,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["services:registry:grpc:0"] = Registry.Address.ToString(),
            ["Queue:MaintenanceInterval"] = "00:00:00.200",
            ["Queue:LeasePollInterval"] = "00:00:00.250",
            ["Queue:OutcomeReportInterval"] = "00:00:00.200",
        };
        Merge(config, settings);
        return StartAsync(QueueApplication.Build, config);
    }

    /// <summary>A recovery instance on this class's recovery database and Redis (a second one is a standby).</summary>
    public Task<ServiceHost> StartRecoveryAsync(IDictionary<string, string?>? settings = null,
        Action<Microsoft.AspNetCore.Builder.WebApplicationBuilder>? configure = null)
    {
        var config = new Dictionary<string, string?>(FastRecovery)
        {
            ["ConnectionStrings:recoverydb"] = RecoveryDatabase,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["services:queue:grpc:0"] = Queue.Address.ToString(),
            ["services:registry:grpc:0"] = Registry.Address.ToString(),
            ["services:checkpoint:grpc:0"] = Checkpoint.Address.ToString(),
        };
        Merge(config, settings);
        return StartAsync(RecoveryApplication.Build, config, configure);
    }

    public QueueService.QueueServiceClient QueueClient(string tenant = "default") => new(Queue.ForTenant(tenant));
    public RegistryService.RegistryServiceClient RegistryClient(string tenant = "default") => new(Registry.ForTenant(tenant));
    public CheckpointService.CheckpointServiceClient CheckpointClient(string tenant = "default") => new(Checkpoint.ForTenant(tenant));
    public RecoveryService.RecoveryServiceClient RecoveryClient(ServiceHost? host = null) => new((host ?? Recovery).Channel);
    public SystemStateService.SystemStateServiceClient SystemStateClient(ServiceHost? host = null) => new((host ?? Recovery).Channel);
    public ConsistencyService.ConsistencyServiceClient ConsistencyClient(ServiceHost? host = null) => new((host ?? Recovery).Channel);
    public RecoveryPlanService.RecoveryPlanServiceClient PlanClient(ServiceHost? host = null) => new((host ?? Recovery).Channel);
    public DisasterRecoveryService.DisasterRecoveryServiceClient DisasterRecoveryClient(ServiceHost? host = null) => new((host ?? Recovery).Channel);

    /// <summary>Runs a query against one of the environment's databases (the store, not just replies).</summary>
    public async Task<T> ScalarOnAsync<T>(string connectionString, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new Npgsql.NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
        return (T)(await command.ExecuteScalarAsync())!;
    }

    protected override async Task OnDisposingAsync()
    {
        for (var i = _hosts.Count - 1; i >= 0; i--)
        {
            await _hosts[i].DisposeAsync();
        }
        foreach (var database in new[] { RegistryDatabase, QueueDatabase, CheckpointDatabase })
        {
            if (database.Length > 0)
            {
                await Postgres.DropDatabaseAsync(database);
            }
        }
    }

    private async Task<ServiceHost> StartAsync(Func<string[], Action<Microsoft.AspNetCore.Builder.WebApplicationBuilder>, Microsoft.AspNetCore.Builder.WebApplication> build,
        Dictionary<string, string?> config, Action<Microsoft.AspNetCore.Builder.WebApplicationBuilder>? configure = null)
    {
        var host = await ServiceHost.StartAsync(build, config, configure);
        _hosts.Add(host);
        return host;
    }

    private static void Merge(Dictionary<string, string?> config, IDictionary<string, string?>? settings)
    {
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
    }
}

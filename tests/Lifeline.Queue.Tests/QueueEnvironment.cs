using Microsoft.AspNetCore.Builder;
using Lifeline.Queue.V1;
using Lifeline.Testing;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A test class's own queue database and Redis, with one or more real queue service instances on
/// loopback ports, reached through real gRPC channels.
/// </summary>
public class QueueEnvironment() : ServiceTestEnvironment("queue")
{
    private readonly List<ServiceHost> _instances = [];

    /// <summary>The first instance, started with the fixture.</summary>
    public ServiceHost Queue => _instances[0];

    /// <summary>Settings of the first instance over the test defaults (a derived fixture may change them).</summary>
    protected virtual IDictionary<string, string?>? Settings => null;

    protected override async Task OnInitializedAsync() => _instances.Add(await StartQueueAsync(DatabaseConnectionString, RedisConnectionString, Settings));

    /// <summary>Starts another instance of the service on the same database and Redis (stopped with the fixture).</summary>
    public async Task<ServiceHost> StartInstanceAsync(IDictionary<string, string?>? settings = null, Action<WebApplicationBuilder>? configure = null)
    {
        var instance = await StartQueueAsync(DatabaseConnectionString, RedisConnectionString, settings, configure);
        _instances.Add(instance);
        return instance;
    }

    /// <summary>Starts a queue service with test intervals on the given database and Redis.</summary>
    public static Task<ServiceHost> StartQueueAsync(string database, string redis, IDictionary<string, string?>? settings = null,
        Action<WebApplicationBuilder>? configure = null)
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:queuedb"] = database,
            ["ConnectionStrings:redis"] = redis,
            ["Queue:MaintenanceInterval"] = "00:00:00.100",
            ["Queue:LeasePollInterval"] = "00:00:00.250",
            ["Queue:WatchPollInterval"] = "00:00:00.050",
            // These tests exercise the queue alone; the registry's worker checks are proven in Lifeline.Registry.Tests.
            ["Queue:WorkerEligibility"] = "None",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            config[key] = value;
        }
        return ServiceHost.StartAsync(QueueApplication.Build, config, configure);
    }

    protected override async Task OnDisposingAsync()
    {
        foreach (var instance in _instances)
        {
            await instance.DisposeAsync();
        }
    }


    /// <summary>A task's status in the store.</summary>
    public Task<string> StatusAsync(string taskId) =>
        ScalarAsync<string>("SELECT status FROM tasks WHERE id = @id", ("id", Guid.Parse(taskId)));

    /// <summary>Number of rows of the queue's tables (for "nothing was written" assertions).</summary>
    public async Task<(long Tasks, long History, long Dependencies)> CountRowsAsync() => (
        await ScalarAsync<long>("SELECT count(*) FROM tasks"),
        await ScalarAsync<long>("SELECT count(*) FROM task_history"),
        await ScalarAsync<long>("SELECT count(*) FROM task_dependencies"));
}

/// <summary>Queue clients of a running instance.</summary>
public static class QueueHostExtensions
{
    /// <summary>A client acting for a tenant (an identity naming it, as the gateway would forward a caller).</summary>
    public static QueueService.QueueServiceClient Client(this ServiceHost host, string tenant = "default") => new(host.ForTenant(tenant));
}

using System.Collections.Concurrent;
using System.Globalization;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Checkpoint;
using Lifeline.Gateway;
using Lifeline.Gateway.Routing;
using Lifeline.Queue;
using Lifeline.Queue.V1;
using Lifeline.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.Workers.Tests;

/// <summary>
/// What a worker meets in production, in-process: a registry, a queue and a checkpoint service (own databases, own
/// Redis) behind a gateway, and a <see cref="FaultProxy"/> between the worker and the gateway's gRPC port — workers connect to
/// <see cref="WorkerTarget"/>, tests break the network with <see cref="Proxy"/>. Tests and operators talk to the
/// gateway directly, so a fault never hides what the queue holds. Each test takes its own tenant
/// (<see cref="NewTenant"/>) with a worker and an operator key, so tests sharing the environment never lease each
/// other's tasks. The gateway records the path of every request with the key it came with (<see cref="GatewayCalls"/>):
/// which calls a worker made, e.g. none to LeaseTasks while it takes tasks from its dispatch stream.
/// </summary>
public sealed class WorkerEnvironment() : ServiceTestEnvironment("workers")
{
    /// <summary>The tenants an environment holds keys for (one per test).</summary>
    public const int Tenants = 12;

    private readonly List<IAsyncDisposable> _hosts = [];
    private readonly ConcurrentQueue<(string Authorization, string Path)> _gatewayRequests = new();
    private int _nextTenant;
    private string _queueDatabase = "";
    private string _checkpointDatabase = "";
    private WebApplication? _gateway;
    private WebApplication? _gatewayWithoutDispatch;
    private readonly SemaphoreSlim _withoutDispatchLock = new(1, 1);
    private GrpcChannel? _operatorChannel;

    public ServiceHost Registry { get; private set; } = null!;

    public ServiceHost Queue { get; private set; } = null!;

    /// <summary>The checkpoint service (the .NET demo's <c>demo.steps</c> saves a checkpoint after each step).</summary>
    public ServiceHost Checkpoint { get; private set; } = null!;

    /// <summary>The gateway's own gRPC address (no faults).</summary>
    public Uri GatewayGrpc { get; private set; } = null!;

    /// <summary>The TCP proxy in front of <see cref="GatewayGrpc"/> that workers connect through.</summary>
    public FaultProxy Proxy { get; private set; } = null!;

    /// <summary>Where workers connect: the gateway through <see cref="Proxy"/>.</summary>
    public Uri WorkerTarget => new($"http://127.0.0.1:{Proxy.Port.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>Registry heartbeat interval the environment runs with (a worker is lost after 3 of them in silence).</summary>
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(1);

    protected override async Task OnInitializedAsync()
    {
        Registry = Track(await ServiceHost.StartAsync(RegistryApplication.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:registrydb"] = DatabaseConnectionString,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["Registry:HeartbeatInterval"] = HeartbeatInterval.ToString("c", CultureInfo.InvariantCulture),
            ["Registry:MonitorInterval"] = "00:00:00.200",
            ["Registry:WatchPollInterval"] = "00:00:00.100",
        }));
        _queueDatabase = await Postgres.CreateDatabaseAsync("queue_for_workers");
        Queue = Track(await ServiceHost.StartAsync(QueueApplication.Build, QueueSettings()));

        _checkpointDatabase = await Postgres.CreateDatabaseAsync("checkpoint_for_workers");
        Checkpoint = Track(await ServiceHost.StartAsync(CheckpointApplication.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:checkpointdb"] = _checkpointDatabase,
        }));

        _gateway = await StartGatewayAsync(Queue);
        GatewayGrpc = _gateway.Services.GetRequiredService<GatewayEndpoints>().Grpc;
        Proxy = FaultProxy.Start(GatewayGrpc.Port);
        _operatorChannel = GrpcChannel.ForAddress(GatewayGrpc);
    }

    /// <summary>
    /// A gateway in front of a second queue instance (same database) that answers <c>Dispatch</c> with UNIMPLEMENTED, as a
    /// queue from before the stream would: started once, on first use. Its requests count in <see cref="GatewayCalls"/> too.
    /// </summary>
    public async Task<Uri> GatewayWithoutDispatchAsync()
    {
        await _withoutDispatchLock.WaitAsync();
        try
        {
            if (_gatewayWithoutDispatch is null)
            {
                var queue = Track(await ServiceHost.StartAsync(QueueApplication.Build, QueueSettings(),
                    b => b.Services.AddSingleton<IStartupFilter>(new DispatchRefusal())));
                _gatewayWithoutDispatch = await StartGatewayAsync(queue);
            }

            return _gatewayWithoutDispatch.Services.GetRequiredService<GatewayEndpoints>().Grpc;
        }
        finally
        {
            _withoutDispatchLock.Release();
        }
    }

    private Dictionary<string, string?> QueueSettings() => new()
    {
        ["ConnectionStrings:queuedb"] = _queueDatabase,
        ["ConnectionStrings:redis"] = RedisConnectionString,
        ["services:registry:grpc:0"] = Registry.Address.ToString(),
        ["Queue:MaintenanceInterval"] = "00:00:00.200",
        ["Queue:LeasePollInterval"] = "00:00:00.250",
        ["Queue:WatchPollInterval"] = "00:00:00.100",
    };

    private async Task<WebApplication> StartGatewayAsync(ServiceHost queue)
    {
        var config = new Dictionary<string, string?>
        {
            ["services:queue:grpc:0"] = queue.Address.ToString(),
            ["services:checkpoint:grpc:0"] = Checkpoint.Address.ToString(),
            ["services:registry:grpc:0"] = Registry.Address.ToString(),
            ["Gateway:GrpcEndpoint"] = "127.0.0.1:0",
            ["Gateway:RestEndpoint"] = "127.0.0.1:0",
            ["Gateway:HealthCacheDuration"] = "00:00:00",
            // Whatever appsettings.json the test output holds: a test gateway logs warnings and errors only.
            ["Logging:LogLevel:Default"] = "Warning",
            ["Logging:LogLevel:Yarp"] = "Warning",
            // Workers reconnecting after an outage come back all at once; no rate limit in the way.
            ["Gateway:RateLimit:PermitsPerSecond"] = "0",
        };
        for (var i = 0; i < Tenants; i++)
        {
            foreach (var (role, n) in new[] { ("worker", 0), ("operator", 1) })
            {
                var index = (i * 2) + n;
                config[$"Gateway:ApiKeys:{index}:Name"] = $"{TenantName(i)}-{role}";
                config[$"Gateway:ApiKeys:{index}:Tenant"] = TenantName(i);
                config[$"Gateway:ApiKeys:{index}:Role"] = role;
                config[$"Gateway:ApiKeys:{index}:Sha256"] = Sha256(Key(i, role));
            }
        }

        foreach (var (name, value) in TestIdentity.Settings)
        {
            config[name] = value;
        }

        var gateway = GatewayApplication.Build([], b =>
        {
            b.Configuration.AddInMemoryCollection(config);
            b.Logging.SetMinimumLevel(LogLevel.Warning);
            b.Services.AddSingleton<IStartupFilter>(new RequestRecorder(_gatewayRequests));
        });
        await gateway.StartAsync();
        return gateway;
    }

    /// <summary>Answers Dispatch with UNIMPLEMENTED (a trailers-only gRPC answer), as a queue from before the stream would.</summary>
    private sealed class DispatchRefusal : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (HttpContext context, RequestDelegate nextMiddleware) =>
            {
                if (context.Request.Path.ToString().EndsWith("/Dispatch", StringComparison.Ordinal))
                {
                    context.Response.ContentType = "application/grpc";
                    context.Response.Headers["grpc-status"] = ((int)StatusCode.Unimplemented).ToString(CultureInfo.InvariantCulture);
                    context.Response.Headers["grpc-message"] = "Method is unimplemented.";
                    return;
                }

                await nextMiddleware(context);
            });
            next(app);
        };
    }

    /// <summary>A tenant of its own for one test, with its keys; throws once the environment's tenants are used up.</summary>
    public WorkerTenant NewTenant()
    {
        var i = Interlocked.Increment(ref _nextTenant) - 1;
        if (i >= Tenants)
        {
            throw new InvalidOperationException($"WorkerEnvironment holds keys for {Tenants} tenants; raise WorkerEnvironment.Tenants.");
        }

        var invoker = _operatorChannel!.WithDeadlines().Intercept(m =>
        {
            m.Add("authorization", "Bearer " + Key(i, "operator"));
            return m;
        });
        return new WorkerTenant(TenantName(i), Key(i, "worker"), Key(i, "operator"), new QueueService.QueueServiceClient(invoker));
    }

    /// <summary>
    /// How many requests for the gRPC method <paramref name="method"/> (<c>QueueService/LeaseTasks</c>: the service's
    /// short name and the method) reached the gateway with <paramref name="tenant"/>'s worker key. A stream counts once.
    /// </summary>
    public int GatewayCalls(WorkerTenant tenant, string method)
    {
        var authorization = "Bearer " + tenant.WorkerKey;
        return _gatewayRequests.Count(r => r.Authorization == authorization && r.Path.EndsWith("." + method, StringComparison.Ordinal));
    }

    /// <summary>Records the key and path of every request, before the gateway's own pipeline sees it.</summary>
    private sealed class RequestRecorder(ConcurrentQueue<(string Authorization, string Path)> into) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (HttpContext context, RequestDelegate nextMiddleware) =>
            {
                into.Enqueue((context.Request.Headers.Authorization.ToString(), context.Request.Path.ToString()));
                await nextMiddleware(context);
            });
            next(app);
        };
    }

    private static string TenantName(int i) => "w" + i.ToString(CultureInfo.InvariantCulture);

    private static string Key(int i, string role) => $"llk_test_{TenantName(i)}_{role}_0123456789";

    private static string Sha256(string key) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)));

    private T Track<T>(T host) where T : IAsyncDisposable
    {
        _hosts.Add(host);
        return host;
    }

    protected override async Task OnDisposingAsync()
    {
        _operatorChannel?.Dispose();
        if (Proxy is not null)
        {
            await Proxy.DisposeAsync();
        }

        foreach (var gateway in new[] { _gatewayWithoutDispatch, _gateway }.OfType<WebApplication>())
        {
            await gateway.StopAsync();
            await gateway.DisposeAsync();
        }

        foreach (var host in Enumerable.Reverse(_hosts))
        {
            await host.DisposeAsync();
        }

        foreach (var database in new[] { _queueDatabase, _checkpointDatabase }.Where(d => d.Length > 0))
        {
            await Postgres.DropDatabaseAsync(database);
        }
    }
}

/// <summary>One test's tenant: the keys a worker and an operator of it present, and an operator's queue client (through the gateway, no faults).</summary>
public sealed record WorkerTenant(string Name, string WorkerKey, string OperatorKey, QueueService.QueueServiceClient Queue)
{
    /// <summary>Enqueues <paramref name="count"/> <c>demo.steps</c> tasks of <paramref name="steps"/> steps of <paramref name="stepMs"/> ms each; returns their ids.</summary>
    public async Task<IReadOnlyList<string>> EnqueueStepsAsync(int count, int steps, int stepMs, int maxRetries = 3)
    {
        var request = new EnqueueTasksRequest();
        for (var i = 0; i < count; i++)
        {
            request.Tasks.Add(new BatchTask
            {
                Key = i.ToString(CultureInfo.InvariantCulture),
                Task = new TaskSpec
                {
                    Type = "demo.steps",
                    Payload = $$"""{"steps":{{steps}},"step_ms":{{stepMs}}}""",
                    MaxRetries = maxRetries,
                },
            });
        }

        var response = await Queue.EnqueueTasksAsync(request);
        return [.. response.Tasks.Select(t => t.Id)];
    }

    /// <summary>Waits until every task is in a final state (or the timeout passes); returns the tasks as they are.</summary>
    public async Task<IReadOnlyList<Lifeline.Queue.V1.Task>> WaitUntilFinalAsync(IReadOnlyList<string> ids, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var tasks = new List<Lifeline.Queue.V1.Task>();
            foreach (var id in ids)
            {
                tasks.Add((await Queue.GetTaskAsync(new GetTaskRequest { TaskId = id })).Task);
            }

            if (tasks.All(IsFinal) || DateTime.UtcNow > deadline)
            {
                return tasks;
            }

            await Task.Delay(250);
        }
    }

    /// <summary>How many times the task's history says it was completed (exactly once, or the queue did something twice).</summary>
    public Task<int> CompletionsAsync(string taskId) => EventsAsync(taskId, "completed");

    /// <summary>How many events of <paramref name="eventType"/> (<c>leased</c>, <c>completed</c> …) the task's history holds.</summary>
    public async Task<int> EventsAsync(string taskId, string eventType) =>
        (await Queue.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = taskId })).Events.Count(e => e.EventType == eventType);

    public static bool IsFinal(Lifeline.Queue.V1.Task task) => task.Status is Lifeline.Queue.V1.TaskStatus.Completed
        or Lifeline.Queue.V1.TaskStatus.Failed or Lifeline.Queue.V1.TaskStatus.Cancelled or Lifeline.Queue.V1.TaskStatus.DeadLettered;
}

/// <summary>
/// The side-effect ledger of <c>demo.steps</c> workers: each finished run appends <c>&lt;task id&gt; &lt;fencing token&gt;
/// &lt;resumed from step&gt;</c> to <c>&lt;path&gt;.&lt;pid&gt;</c> before reporting its outcome. A task listed twice ran twice.
/// </summary>
public static class Ledger
{
    public sealed record Entry(string TaskId, long FencingToken, int ResumedFrom, int Pid);

    /// <summary>Every entry of every process that wrote to <paramref name="path"/>.</summary>
    public static IReadOnlyList<Entry> Read(string path)
    {
        var directory = Path.GetDirectoryName(path)!;
        var prefix = Path.GetFileName(path) + ".";
        var entries = new List<Entry>();
        if (!Directory.Exists(directory))
        {
            return entries;
        }

        foreach (var file in Directory.EnumerateFiles(directory, prefix + "*"))
        {
            var pid = int.Parse(Path.GetFileName(file)[prefix.Length..], CultureInfo.InvariantCulture);
            foreach (var line in File.ReadAllLines(file).Where(l => l.Length > 0))
            {
                var parts = line.Split(' ');
                entries.Add(new Entry(parts[0], long.Parse(parts[1], CultureInfo.InvariantCulture),
                    parts.Length > 2 ? int.Parse(parts[2], CultureInfo.InvariantCulture) : 0, pid));
            }
        }

        return entries;
    }
}

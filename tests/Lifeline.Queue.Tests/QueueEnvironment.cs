using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Queue.V1;
using Lifeline.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A test class's own queue database and Redis, with one or more real queue service instances on
/// loopback ports, reached through real gRPC channels.
/// </summary>
public sealed class QueueEnvironment() : ServiceTestEnvironment("queue")
{
    private readonly List<QueueInstance> _instances = [];

    /// <summary>The first instance, started with the fixture.</summary>
    public QueueInstance Queue => _instances[0];

    protected override async Task OnInitializedAsync() => _instances.Add(await StartInstanceAsync());

    /// <summary>Starts another instance of the service on the same database and Redis.</summary>
    public async Task<QueueInstance> StartInstanceAsync(IDictionary<string, string?>? settings = null)
    {
        var instance = await QueueInstance.StartAsync(DatabaseConnectionString, RedisConnectionString, settings);
        if (_instances.Count > 0)
        {
            _instances.Add(instance);
        }
        return instance;
    }

    protected override async Task OnDisposingAsync()
    {
        foreach (var instance in _instances)
        {
            await instance.DisposeAsync();
        }
    }

    /// <summary>Runs a scalar query against the queue database (assertions look at the store, not just replies).</summary>
    public async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(DatabaseConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>A task's status in the store.</summary>
    public Task<string> StatusAsync(string taskId) =>
        ScalarAsync<string>("SELECT status FROM tasks WHERE id = @id", ("id", Guid.Parse(taskId)));

    /// <summary>Number of rows of a table (for "nothing was written" assertions).</summary>
    public async Task<(long Tasks, long History, long Dependencies)> CountRowsAsync() => (
        await ScalarAsync<long>("SELECT count(*) FROM tasks"),
        await ScalarAsync<long>("SELECT count(*) FROM task_history"),
        await ScalarAsync<long>("SELECT count(*) FROM task_dependencies"));
}

/// <summary>One running queue service instance.</summary>
public sealed class QueueInstance(WebApplication app, Uri address) : IAsyncDisposable
{
    /// <summary>Starts a queue service on a free loopback port (HTTP/2 cleartext, as in production).</summary>
    public static async Task<QueueInstance> StartAsync(string database, string redis, IDictionary<string, string?>? settings = null)
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
        var app = QueueApplication.Build([], builder =>
        {
            builder.Configuration.AddInMemoryCollection(config);
            builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new QueueInstance(app, new Uri(address));
    }

    private readonly GrpcChannel _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
        MaxReceiveMessageSize = 64 * 1024 * 1024,
        MaxSendMessageSize = 64 * 1024 * 1024,
    });

    public Uri Address { get; } = address;
    public WebApplication App { get; } = app;
    public GrpcChannel Channel => _channel;

    /// <summary>A client acting for a tenant (the x-lifeline-tenant header the gateway would set).</summary>
    public QueueService.QueueServiceClient Client(string tenant = "default") =>
        new(_channel.Intercept(metadata =>
        {
            metadata.Add("x-lifeline-tenant", tenant);
            return metadata;
        }));

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

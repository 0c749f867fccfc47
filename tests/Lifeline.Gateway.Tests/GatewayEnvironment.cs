using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Gateway;
using Lifeline.Gateway.Routing;
using Lifeline.Gateway.Security;
using Lifeline.Queue;
using Lifeline.Queue.V1;
using Lifeline.Registry;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Security;
using Lifeline.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.Gateway.Tests;

/// <summary>
/// A registry and a queue (own databases, own Redis) as in production, and a gateway in front of them with
/// the test API keys below. The gateway's unary activity timeout is short (2 s), so a stream that outlives it
/// proves streams use their own, long one. The queue records the headers each call arrived with. The gateway signs
/// identity tokens with the suite's test key (<see cref="TestIdentity"/>), so a test can read what the queue was told.
/// </summary>
public sealed class GatewayEnvironment() : ServiceTestEnvironment("gateway")
{
    public const string SigningKey = "test-signing-key-of-at-least-32-bytes!!";

    /// <summary>name → (tenant, role, key).</summary>
    public static readonly IReadOnlyDictionary<string, (string Tenant, string Role, string Key)> Keys =
        new Dictionary<string, (string, string, string)>
        {
            ["default-reader"] = ("default", "reader", "key-default-reader-0123456789"),
            ["default-worker"] = ("default", "worker", "key-default-worker-0123456789"),
            ["default-operator"] = ("default", "operator", "key-default-operator-0123456789"),
            ["platform-admin"] = ("default", "platform-admin", "key-platform-admin-0123456789"),
            ["acme-worker"] = ("acme", "worker", "key-acme-worker-0123456789"),
            ["acme-operator"] = ("acme", "operator", "key-acme-operator-0123456789"),
            ["limited-worker"] = ("default", "worker", "key-limited-worker-0123456789"),
            ["limited-rest"] = ("default", "worker", "key-limited-rest-0123456789"),
        };

    private readonly List<IAsyncDisposable> _hosts = [];
    private Task<GatewayHost>? _identityKeyedGateway;

    public ServiceHost Registry { get; private set; } = null!;
    public ServiceHost Queue { get; private set; } = null!;
    public GatewayHost Gateway { get; private set; } = null!;
    public string QueueDatabase { get; private set; } = "";

    /// <summary>Headers of every call the queue received: x-trace-id, traceparent, x-lifeline-identity, authorization, x-api-key.</summary>
    public ConcurrentQueue<IReadOnlyDictionary<string, string>> QueueRequests { get; } = new();

    public static string Key(string name) => Keys[name].Key;

    /// <summary>
    /// The Lifeline calls (gRPC or REST; not health checks or reflection) the queue received after its first
    /// <paramref name="skip"/> requests.
    /// </summary>
    public IReadOnlyList<IReadOnlyDictionary<string, string>> QueueCallsSince(int skip) => [.. QueueRequests.Skip(skip).Where(h =>
        h[PathKey].StartsWith("/lifeline.", StringComparison.Ordinal) || h[PathKey].StartsWith("/api/", StringComparison.Ordinal))];

    protected override async Task OnInitializedAsync()
    {
        Registry = await StartRegistryAsync();
        QueueDatabase = await Postgres.CreateDatabaseAsync("queue_for_gateway");
        Queue = await StartQueueAsync();
        Gateway = await StartGatewayAsync();
    }

    public async Task<ServiceHost> StartRegistryAsync()
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:registrydb"] = DatabaseConnectionString,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["Registry:HeartbeatInterval"] = "00:00:01",
            ["Registry:MonitorInterval"] = "00:00:00.100",
            ["Registry:WatchPollInterval"] = "00:00:00.050",
        };
        return Track(await ServiceHost.StartAsync(RegistryApplication.Build, config));
    }

    private async Task<ServiceHost> StartQueueAsync()
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:queuedb"] = QueueDatabase,
            ["ConnectionStrings:redis"] = RedisConnectionString,
            ["services:registry:grpc:0"] = Registry.Address.ToString(),
            ["Queue:WatchPollInterval"] = "00:00:00.050",
        };
        return Track(await ServiceHost.StartAsync(QueueApplication.Build, config,
            b => b.Services.AddSingleton<IStartupFilter>(new HeaderRecorder(QueueRequests))));
    }

    /// <summary>A gateway in front of the given registry (default: the environment's) and the queue.</summary>
    public async Task<GatewayHost> StartGatewayAsync(IDictionary<string, string?>? settings = null, ServiceHost? registry = null)
    {
        var config = new Dictionary<string, string?>(TestIdentity.Settings)
        {
            ["services:queue:grpc:0"] = Queue.Address.ToString(),
            ["services:registry:grpc:0"] = (registry ?? Registry).Address.ToString(),
            ["Gateway:GrpcEndpoint"] = "127.0.0.1:0",
            ["Gateway:RestEndpoint"] = "127.0.0.1:0",
            ["Gateway:ActivityTimeout"] = "00:00:02",
            ["Gateway:HealthCacheDuration"] = "00:00:00",
            // Whatever appsettings.json the test output holds: a test gateway logs warnings and errors only.
            ["Logging:LogLevel:Default"] = "Warning",
            ["Logging:LogLevel:Yarp"] = "Warning",
            ["Gateway:Jwt:SigningKey"] = SigningKey,
        };
        var i = 0;
        foreach (var (name, (tenant, role, key)) in Keys)
        {
            config[$"Gateway:ApiKeys:{i}:Name"] = name;
            config[$"Gateway:ApiKeys:{i}:Tenant"] = tenant;
            config[$"Gateway:ApiKeys:{i}:Role"] = role;
            config[$"Gateway:ApiKeys:{i}:Sha256"] = ApiKeyAuthenticationHandler.Hash(key);
            i++;
        }

        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }

        var app = GatewayApplication.Build([], b =>
        {
            b.Configuration.AddInMemoryCollection(config);
            b.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        await app.StartAsync();
        return Track(new GatewayHost(app));
    }

    /// <summary>
    /// A second gateway (started once) with the worst JWT settings an operator could choose: the suite's identity key
    /// as <c>Gateway:Jwt:SigningKey</c>, and the identity tokens' issuer and audience as the JWT issuer and audience.
    /// Its JWTs are signed with <see cref="TestIdentity.SigningKey"/>.
    /// </summary>
    public Task<GatewayHost> IdentityKeyedGatewayAsync()
    {
        lock (_hosts)
        {
            return _identityKeyedGateway ??= StartGatewayAsync(new Dictionary<string, string?>
            {
                ["Gateway:Jwt:SigningKey"] = TestIdentity.SigningKey,
                ["Gateway:Jwt:Issuer"] = IdentityKeyedIssuer,
                ["Gateway:Jwt:Audience"] = IdentityKeyedAudience,
            });
        }
    }

    /// <summary>The issuer and audience <see cref="IdentityKeyedGatewayAsync"/> requires of JWTs.</summary>
    public const string IdentityKeyedIssuer = "lifeline-gateway", IdentityKeyedAudience = IdentityTokens.Audience;

    private T Track<T>(T host) where T : IAsyncDisposable
    {
        lock (_hosts)
        {
            _hosts.Add(host);
        }

        return host;
    }

    protected override async Task OnDisposingAsync()
    {
        foreach (var host in Enumerable.Reverse(_hosts))
        {
            await host.DisposeAsync();
        }

        if (QueueDatabase.Length > 0)
        {
            await Postgres.DropDatabaseAsync(QueueDatabase);
        }
    }

    /// <summary>Records the headers of every request, before anything else sees them.</summary>
    /// <summary>The key under which <see cref="QueueRequests"/> entries carry the request's path.</summary>
    public const string PathKey = ":path";

    private sealed class HeaderRecorder(ConcurrentQueue<IReadOnlyDictionary<string, string>> into) : IStartupFilter
    {
        private static readonly string[] Recorded = ["x-trace-id", "traceparent", IdentityTokens.HeaderName, "authorization", "x-api-key"];

        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (HttpContext context, RequestDelegate nextMiddleware) =>
            {
                var headers = Recorded
                    .Where(h => context.Request.Headers.ContainsKey(h))
                    .ToDictionary(h => h, h => context.Request.Headers[h].ToString(), StringComparer.Ordinal);
                headers[PathKey] = context.Request.Path.ToString();
                into.Enqueue(headers);
                await nextMiddleware(context);
            });
            next(app);
        };
    }
}

/// <summary>The gateway in-process, with clients that present a key (or none) through a real channel.</summary>
public sealed class GatewayHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GrpcChannel _channel;

    public GatewayHost(WebApplication app)
    {
        _app = app;
        var endpoints = app.Services.GetRequiredService<GatewayEndpoints>();
        Grpc = endpoints.Grpc;
        Rest = endpoints.Rest;
        _channel = GrpcChannel.ForAddress(Grpc, new GrpcChannelOptions { MaxReceiveMessageSize = null });
        RestClient = new HttpClient { BaseAddress = Rest, DefaultRequestVersion = System.Net.HttpVersion.Version11 };
    }

    /// <summary>gRPC and REST over HTTP/2.</summary>
    public Uri Grpc { get; }

    /// <summary>REST over HTTP/1.1.</summary>
    public Uri Rest { get; }

    /// <summary>Calls with no credential, each with a deadline.</summary>
    public CallInvoker Channel => _channel.WithDeadlines();

    /// <summary>Plain HTTP/1.1 client of the REST port.</summary>
    public HttpClient RestClient { get; }

    /// <summary>A call invoker that sends <c>authorization: Bearer</c> with the named key (none when null) and any extra headers.</summary>
    public CallInvoker Invoker(string? keyName, params (string Name, string Value)[] headers) => _channel.WithDeadlines().Intercept(m =>
    {
        if (keyName is not null)
        {
            m.Add("authorization", "Bearer " + GatewayEnvironment.Key(keyName));
        }

        foreach (var (name, value) in headers)
        {
            m.Add(name, value);
        }

        return m;
    });

    public QueueService.QueueServiceClient Queue(string? keyName, params (string Name, string Value)[] headers) => new(Invoker(keyName, headers));

    public RegistryService.RegistryServiceClient Registry(string? keyName, params (string Name, string Value)[] headers) => new(Invoker(keyName, headers));

    public async ValueTask DisposeAsync()
    {
        RestClient.Dispose();
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.Testing;

/// <summary>
/// A Lifeline service running in the test process on a free loopback port (HTTP/2 cleartext, as in the
/// composed suite), with a real gRPC channel to it.
/// </summary>
public sealed class ServiceHost : IAsyncDisposable
{
    private readonly GrpcChannel _channel;
    private bool _stopped;

    private ServiceHost(WebApplication app, Uri address)
    {
        App = app;
        Address = address;
        _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
            MaxSendMessageSize = 64 * 1024 * 1024,
        });
        Anonymous = _channel.WithDeadlines();
        Channel = Anonymous.As(DefaultTenant);
    }

    /// <summary>The tenant <see cref="Channel"/> acts for.</summary>
    public const string DefaultTenant = "default";

    public WebApplication App { get; }

    public Uri Address { get; }

    /// <summary>
    /// Calls over a real HTTP/2 channel to the service, each with a deadline (<see cref="TestDeadlines"/>) and a
    /// service identity acting for tenant <see cref="DefaultTenant"/> (<see cref="TestIdentity"/>).
    /// </summary>
    public CallInvoker Channel { get; }

    /// <summary>The same channel without an identity: what a caller that bypasses the gateway has.</summary>
    public CallInvoker Anonymous { get; }

    /// <summary>
    /// Starts a service from its <c>XApplication.Build(args, configure)</c> with the given settings, listening on
    /// a free loopback port with HTTP/2 only, logging warnings and errors.
    /// </summary>
    public static Task<ServiceHost> StartAsync(
        Func<string[], Action<WebApplicationBuilder>, WebApplication> build, IDictionary<string, string?> settings,
        Action<WebApplicationBuilder>? configure = null) =>
        StartAsync(args => build(args, builder =>
        {
            // The services' appsettings log at Information; a test host logs warnings and errors unless a test says otherwise.
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Logging:LogLevel:Default"] = "Warning" });
            builder.Configuration.AddInMemoryCollection(TestIdentity.Settings);
            builder.Configuration.AddInMemoryCollection(settings);
            builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            configure?.Invoke(builder);
        }));

    /// <summary>Starts an application built by <paramref name="build"/> (which configures its own endpoints).</summary>
    public static async Task<ServiceHost> StartAsync(Func<string[], WebApplication> build)
    {
        var app = build([]);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ServiceHost(app, new Uri(address));
    }

    /// <summary>A call invoker acting for <paramref name="tenant"/> as a service would (the gateway sets a caller's tenant the same way).</summary>
    public CallInvoker ForTenant(string tenant = DefaultTenant) => Anonymous.As(tenant);

    /// <summary>A call invoker acting for <paramref name="tenant"/> in <paramref name="role"/>, as the gateway would forward a caller.</summary>
    public CallInvoker As(string? tenant, Lifeline.ServiceDefaults.Security.Role role) => Anonymous.As(tenant, role);

    /// <summary>
    /// An HTTP/2 client for the service's REST routes whose requests carry a service identity acting for
    /// <paramref name="tenant"/> (minted now: good for the token's lifetime, 5 minutes).
    /// </summary>
    public HttpClient Rest(string tenant = DefaultTenant)
    {
        var http = new HttpClient
        {
            BaseAddress = Address,
            DefaultRequestVersion = System.Net.HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(30),
        };
        var header = TestIdentity.Header(tenant);
        http.DefaultRequestHeaders.Add(header.Key, header.Value);
        return http;
    }

    /// <summary>Stops the service (as a crash or a deploy would); disposing later is still safe.</summary>
    public async Task StopAsync()
    {
        if (!_stopped)
        {
            _stopped = true;
            await App.StopAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await StopAsync();
        await App.DisposeAsync();
    }
}

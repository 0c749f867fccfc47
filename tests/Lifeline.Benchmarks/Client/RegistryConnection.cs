using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>
/// The one gRPC channel every simulated worker shares. Kestrel allows 100 concurrent streams per HTTP/2
/// connection, so <see cref="SocketsHttpHandler.EnableMultipleHttp2Connections"/> lets the handler open
/// another connection whenever the open ones are full: 10,000 heartbeat streams ride on about 100.
/// Every call carries the run's tenant.
/// </summary>
internal sealed class RegistryConnection : IDisposable
{
    private const string TenantHeader = "x-lifeline-tenant";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);
    private readonly GrpcChannel _channel;

    private RegistryConnection(GrpcChannel channel, string tenant)
    {
        _channel = channel;
        Tenant = tenant;
        Registry = new RegistryService.RegistryServiceClient(channel.Intercept(metadata =>
        {
            metadata.Add(TenantHeader, tenant);
            return metadata;
        }));
    }

    public string Tenant { get; }

    public RegistryService.RegistryServiceClient Registry { get; }

    public static RegistryConnection Open(Uri url, string tenant) =>
        new(GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        }), tenant);

    /// <summary>Options for one unary call: a deadline, so a hung call fails the scenario instead of stalling it.</summary>
    public static CallOptions Call(CancellationToken cancellationToken) =>
        new(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);

    /// <summary>Options for a long-lived stream: no deadline, ended by the token (or by completing the request stream).</summary>
    public static CallOptions Stream(CancellationToken cancellationToken) => new(cancellationToken: cancellationToken);

    public void Dispose() => _channel.Dispose();
}

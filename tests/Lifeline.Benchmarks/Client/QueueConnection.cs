using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Queue.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>
/// The one gRPC channel every simulated worker and producer shares, as a real client process would:
/// calls are multiplexed over HTTP/2, and more connections are opened when one runs out of streams.
/// Every call carries the run's tenant, so a run never sees another's tasks.
/// </summary>
internal sealed class QueueConnection : IDisposable
{
    private const string TenantHeader = "x-lifeline-tenant";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);
    private readonly GrpcChannel _channel;

    private QueueConnection(GrpcChannel channel, string tenant)
    {
        _channel = channel;
        Tenant = tenant;
        Queue = new QueueService.QueueServiceClient(channel.Intercept(metadata =>
        {
            metadata.Add(TenantHeader, tenant);
            return metadata;
        }));
    }

    public string Tenant { get; }

    public QueueService.QueueServiceClient Queue { get; }

    public static QueueConnection Open(Uri url, string tenant) =>
        new(GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        }), tenant);

    /// <summary>Options for one call: a deadline, so a hung call fails the scenario instead of stalling it.</summary>
    public static CallOptions Call(CancellationToken cancellationToken) =>
        new(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);

    public void Dispose() => _channel.Dispose();
}

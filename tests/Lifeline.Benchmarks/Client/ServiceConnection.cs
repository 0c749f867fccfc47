using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Testing;

namespace Lifeline.Benchmarks.Client;

/// <summary>
/// The one gRPC channel every simulated worker and producer of a service shares, as a real client process
/// would: calls are multiplexed over HTTP/2, and because Kestrel allows 100 concurrent streams per
/// connection, <see cref="SocketsHttpHandler.EnableMultipleHttp2Connections"/> opens another connection
/// whenever the open ones are full (10,000 heartbeat streams ride on about 100). Every call carries an identity
/// acting for the run's tenant (<see cref="TestIdentity"/>, as the gateway would forward a caller), so a run never
/// sees another's tasks or workers.
/// </summary>
internal abstract class ServiceConnection<TClient> : IDisposable
{
    private readonly GrpcChannel _channel;

    protected ServiceConnection(Uri url, string tenant, Func<CallInvoker, TClient> createClient)
    {
        var channel = GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        });
        _channel = channel;
        Tenant = tenant;
        Client = createClient(channel.CreateCallInvoker().As(tenant));
    }

    public string Tenant { get; }

    protected TClient Client { get; }

    public void Dispose() => _channel.Dispose();
}

/// <summary>Call options shared by every scenario.</summary>
internal static class Calls
{
    /// <summary>A unary call with a deadline, so a hung call fails the scenario instead of stalling it.</summary>
    public static CallOptions Unary(CancellationToken cancellationToken, TimeSpan timeout) =>
        new(deadline: DateTime.UtcNow + timeout, cancellationToken: cancellationToken);

    /// <summary>A long-lived stream: no deadline, ended by the token (or by completing the request stream).</summary>
    public static CallOptions Stream(CancellationToken cancellationToken) => new(cancellationToken: cancellationToken);
}

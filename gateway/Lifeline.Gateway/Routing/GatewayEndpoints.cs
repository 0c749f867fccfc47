using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Lifeline.Gateway.Routing;

/// <summary>The gateway's two listeners; after start they hold the bound ports (also when configured as port 0).</summary>
public sealed class GatewayEndpoints
{
    internal ListenOptions? GrpcListener { get; set; }

    internal ListenOptions? RestListener { get; set; }

    /// <summary>gRPC, and REST over HTTP/2: <c>http://127.0.0.1:5100</c>.</summary>
    public Uri Grpc => Address(GrpcListener);

    /// <summary>REST over HTTP/1.1: <c>http://127.0.0.1:5180</c>.</summary>
    public Uri Rest => Address(RestListener);

    private static Uri Address(ListenOptions? listener) =>
        listener is not null ? new Uri($"http://{listener.IPEndPoint}") : throw new InvalidOperationException("The gateway has not started.");
}

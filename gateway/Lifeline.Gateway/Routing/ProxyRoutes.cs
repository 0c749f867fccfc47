using System.Net;
using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Options;
using Lifeline.Gateway.Security;
using Lifeline.ServiceDefaults.Security;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace Lifeline.Gateway.Routing;

/// <summary>
/// YARP's routes and clusters, derived from the contracts: per RPC one gRPC route (its exact path) and one route
/// per <c>google.api.http</c> binding, each carrying the RPC's full name in its metadata and requiring the
/// authorization policy of the role <see cref="RpcPermissions"/> names for it (<see cref="RoleRequirement"/>; an RPC
/// missing there: no credential may call it). Per service two clusters with the same instances: one for unary
/// calls, one with a long activity timeout for streams. Upstream calls are HTTP/2 only (the services speak h2c), also for REST callers
/// who came over HTTP/1.1.
/// </summary>
internal static class ProxyRoutes
{
    /// <summary>Route metadata key: the RPC's full name, <c>lifeline.queue.v1.QueueService/GetTask</c>.</summary>
    public const string RpcMetadataKey = "lifeline.rpc";

    /// <summary>Route metadata key: <c>grpc</c> or <c>rest</c>.</summary>
    public const string KindMetadataKey = "lifeline.kind";

    /// <summary>Route metadata key: <c>true</c> for streaming RPCs.</summary>
    public const string StreamingMetadataKey = "lifeline.streaming";

    public static (IReadOnlyList<RouteConfig> Routes, IReadOnlyList<ClusterConfig> Clusters) Build(
        ContractCatalog catalog, UpstreamServices upstreams, GatewayOptions options)
    {
        var routes = new List<RouteConfig>();
        foreach (var method in catalog.Methods.Values.Where(m => upstreams.Addresses.ContainsKey(m.Upstream)).OrderBy(m => m.FullName, StringComparer.Ordinal))
        {
            var cluster = ClusterId(method.Upstream, method.IsStreaming);
            var policy = RoleRequirement.PolicyName(RpcPermissions.Required(method.FullName));
            routes.Add(new RouteConfig
            {
                RouteId = $"grpc:{method.FullName}",
                ClusterId = cluster,
                Match = new RouteMatch { Path = method.GrpcPath, Methods = ["POST"] },
                AuthorizationPolicy = policy,
                Metadata = Metadata(method, "grpc"),
            });

            for (var i = 0; i < method.HttpRoutes.Count; i++)
            {
                var http = method.HttpRoutes[i];
                routes.Add(new RouteConfig
                {
                    RouteId = $"rest:{method.FullName}:{i}",
                    ClusterId = cluster,
                    Match = new RouteMatch { Path = http.ToRoutePattern(), Methods = [http.HttpMethod] },
                    AuthorizationPolicy = policy,
                    Metadata = Metadata(method, "rest"),
                });
            }
        }

        var clusters = new List<ClusterConfig>();
        foreach (var (name, addresses) in upstreams.Addresses)
        {
            var destinations = addresses
                .Select((address, i) => (Id: $"{name}-{i}", Config: new DestinationConfig { Address = address.ToString() }))
                .ToDictionary(d => d.Id, d => d.Config, StringComparer.Ordinal);
            foreach (var streaming in new[] { false, true })
            {
                clusters.Add(new ClusterConfig
                {
                    ClusterId = ClusterId(name, streaming),
                    Destinations = destinations,
                    HttpRequest = new ForwarderRequestConfig
                    {
                        Version = HttpVersion.Version20,
                        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                        ActivityTimeout = streaming ? options.StreamActivityTimeout : options.ActivityTimeout,
                    },
                    HttpClient = new HttpClientConfig { EnableMultipleHttp2Connections = true },
                });
            }
        }

        return (routes, clusters);
    }

    private static Dictionary<string, string> Metadata(RpcMethod method, string kind) => new(StringComparer.Ordinal)
    {
        [RpcMetadataKey] = method.FullName,
        [KindMetadataKey] = kind,
        [StreamingMetadataKey] = method.IsStreaming ? "true" : "false",
    };

    private static string ClusterId(string upstream, bool streaming) => streaming ? upstream + "-streams" : upstream;
}

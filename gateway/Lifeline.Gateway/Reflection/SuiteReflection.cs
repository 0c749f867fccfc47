using Google.Protobuf.Reflection;
using ServiceDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;
using Grpc.Reflection;
using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Routing;

namespace Lifeline.Gateway.Reflection;

/// <summary>
/// gRPC server reflection (v1 and v1alpha) hosted by the gateway itself, describing every routed Lifeline service
/// plus <c>grpc.health.v1.Health</c> and reflection, so <c>grpcurl -plaintext 127.0.0.1:5100 list</c> shows the
/// whole suite without proto files. Needs no credential: contracts are public; calls are not.
/// </summary>
internal static class SuiteReflection
{
    public static void AddSuiteReflection(this IServiceCollection services, ContractCatalog catalog, UpstreamServices upstreams)
    {
        IReadOnlyList<ServiceDescriptor> descriptors =
        [
            .. catalog.Services.Where(s => upstreams.Addresses.ContainsKey(s.Upstream)).Select(s => s.Descriptor),
            Grpc.Health.V1.Health.Descriptor,
            Grpc.Reflection.V1Alpha.ServerReflection.Descriptor,
            Grpc.Reflection.V1.ServerReflection.Descriptor,
        ];
        services.AddSingleton(new ReflectionServiceImpl(descriptors));
        services.AddSingleton(new ReflectionV1ServiceImpl(descriptors));
    }

    public static void MapSuiteReflection(this WebApplication app)
    {
        app.MapGrpcService<ReflectionServiceImpl>();
        app.MapGrpcService<ReflectionV1ServiceImpl>();
    }
}

using System.Reflection;
using System.Text.RegularExpressions;
using Google.Api;
using Google.Protobuf.Reflection;
using ServiceDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;

namespace Lifeline.Gateway.Contracts;

/// <summary>One RPC of a Lifeline contract, with its REST bindings.</summary>
/// <param name="FullName"><c>lifeline.queue.v1.QueueService/EnqueueTask</c>, the name permissions are granted by.</param>
/// <param name="Upstream">The owning service's name (<c>queue</c>): its cluster and <c>services__queue__grpc__0</c>.</param>
internal sealed record RpcMethod(string FullName, string Upstream, MethodDescriptor Descriptor, IReadOnlyList<HttpRoute> HttpRoutes)
{
    /// <summary>Client, server or bidirectional streaming: kept open as long as the caller wants.</summary>
    public bool IsStreaming => Descriptor.IsClientStreaming || Descriptor.IsServerStreaming;

    /// <summary>The gRPC request path, <c>/lifeline.queue.v1.QueueService/EnqueueTask</c>.</summary>
    public string GrpcPath => "/" + FullName;
}

/// <summary>One Lifeline gRPC service of the contracts.</summary>
internal sealed record RpcService(string FullName, string Upstream, ServiceDescriptor Descriptor, IReadOnlyList<RpcMethod> Methods);

/// <summary>
/// Every Lifeline service in the compiled contracts (<c>protos/</c>), found by reflection over the contracts
/// assembly, with each RPC's <c>google.api.http</c> rules. The one source the gateway's routes, permissions,
/// reflection and OpenAPI document are derived from, so a new service or RPC needs no second list.
/// A service belongs to the upstream named by its package: <c>lifeline.&lt;upstream&gt;.v&lt;n&gt;</c>.
/// </summary>
internal sealed partial class ContractCatalog
{
    private ContractCatalog(IReadOnlyList<RpcService> services)
    {
        Services = services;
        Methods = services.SelectMany(s => s.Methods).ToDictionary(m => m.FullName, StringComparer.Ordinal);
    }

    public IReadOnlyList<RpcService> Services { get; }

    /// <summary>By <see cref="RpcMethod.FullName"/>.</summary>
    public IReadOnlyDictionary<string, RpcMethod> Methods { get; }

    /// <summary>The catalog of the contracts assembly (the one holding the queue's contract).</summary>
    public static ContractCatalog Load() => FromAssembly(typeof(Lifeline.Queue.V1.QueueService).Assembly);

    public static ContractCatalog FromAssembly(Assembly contracts)
    {
        var files = contracts.GetTypes()
            .Where(t => t.IsClass && t.IsAbstract && t.IsSealed && t.Name.EndsWith("Reflection", StringComparison.Ordinal))
            .Select(t => t.GetProperty("Descriptor", BindingFlags.Public | BindingFlags.Static)?.GetValue(null))
            .OfType<FileDescriptor>()
            .Where(f => f.Package.StartsWith("lifeline.", StringComparison.Ordinal))
            .OrderBy(f => f.Name, StringComparer.Ordinal);

        var services = new List<RpcService>();
        foreach (var file in files)
        {
            var match = LifelinePackage().Match(file.Package);
            if (!match.Success)
            {
                continue;
            }

            var upstream = match.Groups["upstream"].Value;
            foreach (var service in file.Services)
            {
                var methods = service.Methods
                    .Select(m => new RpcMethod($"{service.FullName}/{m.Name}", upstream, m, HttpRoutesOf(m)))
                    .ToList();
                services.Add(new RpcService(service.FullName, upstream, service, methods));
            }
        }

        return new ContractCatalog(services);
    }

    private static List<HttpRoute> HttpRoutesOf(MethodDescriptor method)
    {
        var rule = method.GetOptions()?.GetExtension(AnnotationsExtensions.Http);
        if (rule is null)
        {
            return [];
        }

        var routes = new List<HttpRoute>();
        foreach (var binding in new[] { rule }.Concat(rule.AdditionalBindings))
        {
            var (verb, template) = binding.PatternCase switch
            {
                HttpRule.PatternOneofCase.Get => ("GET", binding.Get),
                HttpRule.PatternOneofCase.Post => ("POST", binding.Post),
                HttpRule.PatternOneofCase.Put => ("PUT", binding.Put),
                HttpRule.PatternOneofCase.Delete => ("DELETE", binding.Delete),
                HttpRule.PatternOneofCase.Patch => ("PATCH", binding.Patch),
                HttpRule.PatternOneofCase.Custom => (binding.Custom.Kind, binding.Custom.Path),
                _ => (null, null),
            };
            if (verb is not null && template is not null)
            {
                routes.Add(HttpRoute.Parse(verb, template, binding.Body));
            }
        }

        return routes;
    }

    [GeneratedRegex("^lifeline\\.(?<upstream>[a-z][a-z0-9_]*)\\.v[0-9]+[a-z0-9]*$")]
    private static partial Regex LifelinePackage();
}

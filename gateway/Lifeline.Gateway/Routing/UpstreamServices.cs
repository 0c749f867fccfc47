using Lifeline.Gateway.Contracts;

namespace Lifeline.Gateway.Routing;

/// <summary>
/// Where each service runs, from Aspire-style configuration: <c>services:queue:grpc:0</c> (environment
/// <c>services__queue__grpc__0</c>), more instances as <c>…:1</c>, <c>…:2</c>. Only services of the contracts
/// that have an address are routed.
/// </summary>
internal sealed class UpstreamServices
{
    private UpstreamServices(IReadOnlyDictionary<string, IReadOnlyList<Uri>> addresses) => Addresses = addresses;

    /// <summary>Instance addresses by service name (<c>queue</c>), for the services that are routed.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<Uri>> Addresses { get; }

    /// <exception cref="InvalidOperationException">An address is malformed, or no contract service has one.</exception>
    public static UpstreamServices FromConfiguration(IConfiguration configuration, ContractCatalog catalog)
    {
        var addresses = new SortedDictionary<string, IReadOnlyList<Uri>>(StringComparer.Ordinal);
        foreach (var name in catalog.Services.Select(s => s.Upstream).Distinct(StringComparer.Ordinal))
        {
            var section = configuration.GetSection($"services:{name}:grpc");
            var uris = new List<Uri>();
            foreach (var instance in section.GetChildren().OrderBy(c => c.Key, StringComparer.Ordinal))
            {
                if (!Uri.TryCreate(instance.Value, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                {
                    throw new InvalidOperationException(
                        $"services:{name}:grpc:{instance.Key} '{instance.Value}' is not an http(s) URL such as http://127.0.0.1:5101.");
                }

                uris.Add(uri);
            }

            if (uris.Count > 0)
            {
                addresses[name] = uris;
            }
        }

        return addresses.Count > 0
            ? new UpstreamServices(addresses)
            : throw new InvalidOperationException(
                "No service to route to: set services:<name>:grpc:0 (environment services__<name>__grpc__0) for at least one of " +
                string.Join(", ", catalog.Services.Select(s => s.Upstream).Distinct(StringComparer.Ordinal)) + ".");
    }
}

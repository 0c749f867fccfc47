using Grpc.Health.V1;
using Grpc.Net.ClientFactory;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.ServiceDefaults.Clients;

/// <summary>A service this one has a client of, at its configured address.</summary>
public sealed record PeerService(string Name, Uri Address);

/// <summary>
/// The services this one has an address for (each registered with
/// <see cref="ServiceClientRegistration.AddServiceClient{TClient}"/> or
/// <see cref="ServiceClientRegistration.AddOptionalServiceClient{TClient}"/>), and a <c>grpc.health.v1</c> client of
/// each (same channel settings, identity and default deadline; never retried: a probe reports what it sees).
/// </summary>
public sealed class PeerServices(IEnumerable<PeerService> peers, IServiceProvider services)
{
    private readonly Dictionary<string, PeerService> _peers = peers.ToDictionary(p => p.Name, StringComparer.Ordinal);

    /// <summary>Whether <paramref name="service"/>'s address is configured.</summary>
    public bool Has(string service) => _peers.ContainsKey(service);

    /// <summary>A health client of <paramref name="service"/>; an <see cref="InvalidOperationException"/> when it is not configured.</summary>
    public Health.HealthClient Health(string service) =>
        Has(service) ? services.GetRequiredService<GrpcClientFactory>().CreateClient<Health.HealthClient>(HealthClientName(service)) : throw NotConfigured(service);

    internal static string HealthClientName(string service) => service + ":grpc.health.v1";

    internal static InvalidOperationException NotConfigured(string service) =>
        new($"{ServiceClientRegistration.AddressKey(service)} is not configured: this service cannot reach the {service} service.");
}

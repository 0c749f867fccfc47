using Grpc.Core;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>The registry's shared channel (see <see cref="ServiceConnection{TClient}"/>).</summary>
internal sealed class RegistryConnection(Uri url, string tenant)
    : ServiceConnection<RegistryService.RegistryServiceClient>(url, tenant, invoker => new RegistryService.RegistryServiceClient(invoker))
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);

    public RegistryService.RegistryServiceClient Registry => Client;

    public static RegistryConnection Open(Uri url, string tenant) => new(url, tenant);

    public static CallOptions Call(CancellationToken cancellationToken) => Calls.Unary(cancellationToken, CallTimeout);

    public static CallOptions Stream(CancellationToken cancellationToken) => Calls.Stream(cancellationToken);
}

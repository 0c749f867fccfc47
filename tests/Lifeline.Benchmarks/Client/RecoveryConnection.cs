using Grpc.Core;
using Lifeline.Recovery.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>The recovery service's shared channel (see <see cref="ServiceConnection{TClient}"/>; recovery ignores the tenant header).</summary>
internal sealed class RecoveryConnection(Uri url, string tenant)
    : ServiceConnection<RecoveryService.RecoveryServiceClient>(url, tenant, invoker => new RecoveryService.RecoveryServiceClient(invoker))
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);

    public RecoveryService.RecoveryServiceClient Recovery => Client;

    public static RecoveryConnection Open(Uri url, string tenant) => new(url, tenant);

    public static CallOptions Call(CancellationToken cancellationToken) => Calls.Unary(cancellationToken, CallTimeout);

    /// <summary>A RunRecoveryScan over a large in-flight set: minutes at most, even on a slow, shared machine.</summary>
    public static CallOptions Scan(CancellationToken cancellationToken) => Calls.Unary(cancellationToken, TimeSpan.FromMinutes(5));
}

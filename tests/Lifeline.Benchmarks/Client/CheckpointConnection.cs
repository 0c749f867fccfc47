using Grpc.Core;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>The checkpoint service's shared channel (see <see cref="ServiceConnection{TClient}"/>).</summary>
internal sealed class CheckpointConnection(Uri url, string tenant)
    : ServiceConnection<CheckpointService.CheckpointServiceClient>(url, tenant, invoker => new CheckpointService.CheckpointServiceClient(invoker))
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    public CheckpointService.CheckpointServiceClient Checkpoints => Client;

    public static CheckpointConnection Open(Uri url, string tenant) => new(url, tenant);

    public static CallOptions Call(CancellationToken cancellationToken) => Calls.Unary(cancellationToken, CallTimeout);

    /// <summary>An artifact upload or download: a few minutes at most, even for a large artifact on a slow machine.</summary>
    public static CallOptions Transfer(CancellationToken cancellationToken) => Calls.Unary(cancellationToken, TimeSpan.FromMinutes(5));
}

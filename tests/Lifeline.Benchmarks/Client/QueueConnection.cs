using Grpc.Core;
using Lifeline.Queue.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>The queue's shared channel (see <see cref="ServiceConnection{TClient}"/>).</summary>
internal sealed class QueueConnection(Uri url, string tenant)
    : ServiceConnection<QueueService.QueueServiceClient>(url, tenant, invoker => new QueueService.QueueServiceClient(invoker))
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    public QueueService.QueueServiceClient Queue => Client;

    public static QueueConnection Open(Uri url, string tenant) => new(url, tenant);

    public static CallOptions Call(CancellationToken cancellationToken) => Calls.Unary(cancellationToken, CallTimeout);
}

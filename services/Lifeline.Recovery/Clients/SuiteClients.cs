using Grpc.Core;
using Grpc.Core.Interceptors;
using Lifeline.ServiceDefaults.Grpc;
using Lifeline.ServiceDefaults.Security;
using Grpc.Net.Client;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.Recovery.Clients;

/// <summary>
/// gRPC clients of the services recovery works with, found as <c>services:&lt;name&gt;:grpc:0</c>
/// (one HTTP/2 channel each, shared). Recovery talks to them only through their contracts, as the service
/// identity <c>lifeline-recovery</c>; calls name the tenant they act for with <see cref="For"/>, calls without
/// one act across tenants.
/// </summary>
public sealed class SuiteClients : IDisposable
{
    private readonly Dictionary<string, GrpcChannel> _channels = [];
    private readonly ServiceIdentity _identity;

    public SuiteClients(IConfiguration configuration, ServiceIdentity identity)
    {
        _identity = identity;
        foreach (var name in new[] { "queue", "registry", "checkpoint", "backup" })
        {
            var address = configuration[$"services:{name}:grpc:0"];
            if (!string.IsNullOrWhiteSpace(address))
            {
                _channels[name] = GrpcChannel.ForAddress(address, new GrpcChannelOptions
                {
                    MaxReceiveMessageSize = ServiceDefaults.Extensions.MaxMessageBytes,
                    MaxSendMessageSize = ServiceDefaults.Extensions.MaxMessageBytes,
                });
            }
        }
    }

    public QueueService.QueueServiceClient Queue => new(Invoker("queue"));
    public RegistryService.RegistryServiceClient Registry => new(Invoker("registry"));
    public CheckpointService.CheckpointServiceClient Checkpoint => new(Invoker("checkpoint"));

    /// <summary>A configured service's channel with recovery's identity and a default deadline on every call that has none.</summary>
    public CallInvoker Invoker(string name) => Channel(name).Intercept(_identity.Interceptor).Intercept(DefaultDeadline.ForServices);

    /// <summary>Whether a service's address is configured.</summary>
    public bool Has(string name) => _channels.ContainsKey(name);

    /// <summary>The channel of a configured service (also for its grpc.health.v1 and other contracts).</summary>
    public GrpcChannel Channel(string name) =>
        _channels.TryGetValue(name, out var channel)
            ? channel
            : throw new InvalidOperationException($"services:{name}:grpc:0 is not configured: recovery cannot reach the {name} service.");

    /// <summary>Call options acting for <paramref name="tenant"/>, with a deadline.</summary>
    public static CallOptions For(string tenant, CancellationToken ct, TimeSpan? timeout = null) =>
        new(ServiceIdentity.ActingFor(tenant), DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30)), ct);

    /// <summary>Call options acting across tenants (ListActiveTenants), with a deadline.</summary>
    public static CallOptions AcrossTenants(CancellationToken ct, TimeSpan? timeout = null) =>
        new(null, DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30)), ct);

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
    }
}

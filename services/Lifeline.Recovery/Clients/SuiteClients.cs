using Grpc.Health.V1;
using Lifeline.Backup.V1;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.Clients;

/// <summary>
/// The services recovery works with, through their contracts only (typed clients registered in
/// <c>AddRecoveryServices</c>: recovery's identity, a default deadline, UNAVAILABLE retried on idempotent calls).
/// The queue and the registry are required: recovery does not start without their addresses. The checkpoint
/// service is optional (without it, lost work is requeued without resuming from a checkpoint), and so is backup
/// (only disaster recovery's backup and restore steps need it). Calls name the tenant they act for with
/// <see cref="ServiceCall.For"/>.
/// </summary>
public sealed class SuiteClients(
    QueueService.QueueServiceClient queue,
    RegistryService.RegistryServiceClient registry,
    OptionalServiceClient<CheckpointService.CheckpointServiceClient> checkpoint,
    OptionalServiceClient<BackupService.BackupServiceClient> backup,
    PeerServices peers)
{
    public QueueService.QueueServiceClient Queue { get; } = queue;

    public RegistryService.RegistryServiceClient Registry { get; } = registry;

    /// <summary>The checkpoint service (check <see cref="Has"/> first: it is optional).</summary>
    public CheckpointService.CheckpointServiceClient Checkpoint => checkpoint.Required;

    /// <summary>The backup service (check <see cref="Has"/> first: it is optional).</summary>
    public BackupService.BackupServiceClient Backup => backup.Required;

    /// <summary>Whether a service's address is configured.</summary>
    public bool Has(string name) => peers.Has(name);

    /// <summary>The grpc.health.v1 client of a configured service.</summary>
    public Health.HealthClient Health(string name) => peers.Health(name);
}

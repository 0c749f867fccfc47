using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Net.Client.Configuration;

namespace Lifeline.ServiceDefaults.Clients;

/// <summary>
/// Which calls a service client retries by itself: only those that may run twice without a second effect, and only
/// on UNAVAILABLE (the peer could not be reached, or said it cannot serve now). A call that did reach the peer may
/// have done its work before the connection broke, so anything that writes without being idempotent (EnqueueTask,
/// RegisterWorker, SendWorkerCommand, CancelTask, RedriveDeadLetters, RemoveDependency, the backup and rollback
/// streams …) is never retried here; its caller decides (recovery's loops retry a whole pass under their own policy).
/// Streams are not retried either: a watch reconnects from its cursor under its loop's policy.
/// </summary>
public static class RetriedCalls
{
    /// <summary>
    /// Retried methods by gRPC service: reads, and the two writes the contracts make idempotent — RecoverTask (fenced:
    /// a repeat with the same token changes nothing and answers ALREADY_RECOVERED) and RecordTaskOutcomes (each
    /// outcome counts once by its id).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> Methods { get; } = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal)
    {
        ["lifeline.queue.v1.QueueService"] =
            ["GetTask", "ListTasks", "GetTaskHistory", "ListDeadLetters", "GetQueueStats", "FindDependencyCycles", "ListActiveTenants", "RecoverTask"],
        ["lifeline.registry.v1.RegistryService"] =
            ["GetWorker", "ListWorkers", "GetWorkerStats", "ListWorkerStats", "GetCircuitBreaker", "ListCircuitBreakers", "ListActiveTenants", "RecordTaskOutcomes"],
        ["lifeline.checkpoint.v1.CheckpointService"] = ["GetCheckpoint", "GetLatestCheckpoint", "ListCheckpoints", "GetWorkflow", "DiffCheckpoints"],
        ["lifeline.backup.v1.BackupService"] = ["GetBackup", "ListBackups", "ListSchedules"],
    };

    /// <summary>
    /// Up to 4 attempts, waiting a random time below 0.2 s, 0.4 s, 0.8 s between them (at most 1.4 s in all), within the
    /// call's deadline: long enough to ride out a peer's restart or a dropped connection, short next to a 30 s deadline.
    /// </summary>
    public static RetryPolicy Policy() => new()
    {
        MaxAttempts = 4,
        InitialBackoff = TimeSpan.FromMilliseconds(200),
        MaxBackoff = TimeSpan.FromSeconds(2),
        BackoffMultiplier = 2,
        RetryableStatusCodes = { StatusCode.Unavailable },
    };

    /// <summary>
    /// The channel configuration retrying <paramref name="service"/>'s methods listed in <see cref="Methods"/>; null when
    /// none is. A listed method the contract does not have, or one that streams, stops the service at start.
    /// </summary>
    public static ServiceConfig? For(ServiceDescriptor service)
    {
        if (!Methods.TryGetValue(service.FullName, out var names))
        {
            return null;
        }
        var method = new MethodConfig { RetryPolicy = Policy() };
        foreach (var name in names)
        {
            var found = service.FindMethodByName(name)
                ?? throw new InvalidOperationException($"RetriedCalls lists {service.FullName}/{name}, which the contract does not have.");
            if (found.IsClientStreaming || found.IsServerStreaming)
            {
                throw new InvalidOperationException($"RetriedCalls lists {service.FullName}/{name}, a stream; only unary calls are retried.");
            }
            method.Names.Add(new MethodName { Service = service.FullName, Method = name });
        }
        return new ServiceConfig { MethodConfigs = { method } };
    }
}

using Lifeline.Queue.Data;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Workers;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lifeline.Queue.Recovery;

/// <summary>
/// Recovery never takes a task away from a worker that is alive and holds a current lease. A task whose
/// lease has expired may always be recovered; one with a current lease only when the registry's Redis
/// mirror shows its worker dead (no heartbeat key, or marked offline or deregistered). When the mirror has
/// no entry at all the worker's liveness is unknown and the task is left alone; when Redis cannot be
/// reached the Redis exception is thrown (UNAVAILABLE) instead of guessing. Without the registry
/// (<see cref="WorkerEligibilityMode.None"/>) only an expired lease allows recovery.
/// </summary>
public sealed class LivenessFence(IConnectionMultiplexer redis, IOptions<QueueOptions> options)
{
    /// <summary>Why the lease may be taken away (recorded in the history), or throws WORKER_STILL_ALIVE.</summary>
    public async Task<string> EnsureHolderIsGoneAsync(string tenant, TaskRecord task, bool leaseCurrent)
    {
        if (!leaseCurrent)
        {
            return "lease_expired";
        }
        var worker = task.AssignedWorkerId!;
        var expires = task.LeaseExpiresAt!.Value;
        if (options.Value.WorkerEligibility == WorkerEligibilityMode.None)
        {
            throw new WorkerStillAliveException(task.Id, worker, expires, "lease_current",
                "the lease is current and this queue runs without the registry (Queue:WorkerEligibility=None), so only an expired lease allows recovery");
        }
        var liveness = await WorkerMirror.ReadLivenessAsync(redis.GetDatabase(), tenant, worker);
        if (liveness.IsAlive)
        {
            throw new WorkerStillAliveException(task.Id, worker, expires, "alive", "the worker is alive (it heartbeats to the registry)");
        }
        if (liveness.IsUnknown)
        {
            throw new WorkerStillAliveException(task.Id, worker, expires, "unknown",
                "the registry's mirror has no entry for the worker, so whether it is alive is unknown until it heartbeats or the lease expires");
        }
        return liveness.Deregistered ? "worker_deregistered" : liveness.Status == "offline" ? "worker_offline" : "worker_not_beating";
    }
}

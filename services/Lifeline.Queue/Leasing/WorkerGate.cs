using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Workers;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lifeline.Queue.Leasing;

/// <summary>
/// Decides on the lease path whether a worker may lease and which of the requested types it may get,
/// from the registry's Redis mirror: one Redis read, no registry call per lease. If Redis cannot be
/// reached the lease is allowed (fail open): fencing tokens keep every outcome safe, and the worker's
/// registry state is enforced again as soon as Redis answers.
/// </summary>
public sealed partial class WorkerGate(IConnectionMultiplexer redis, IOptions<QueueOptions> options, ILogger<WorkerGate> logger)
{
    /// <summary>The task types the worker may lease now; throws FAILED_PRECONDITION when it may not lease at all.</summary>
    public async Task<string[]> AdmitAsync(string tenant, LeaseRequest request)
    {
        if (options.Value.WorkerEligibility == WorkerEligibilityMode.None)
        {
            return request.TaskTypes;
        }
        WorkerEligibility? worker;
        try
        {
            worker = await WorkerMirror.ReadEligibilityAsync(redis.GetDatabase(), tenant, request.WorkerId);
        }
        catch (RedisException ex)
        {
            LogFailOpen(logger, request.WorkerId, ex);
            return request.TaskTypes;
        }
        if (worker is null)
        {
            throw Refuse(request.WorkerId, "WORKER_NOT_REGISTERED", "the worker is not registered with the registry; register it first");
        }
        if (worker.Refusal(DateTimeOffset.UtcNow) is { } refusal)
        {
            throw Refuse(request.WorkerId, refusal.Reason, refusal.Message);
        }
        var allowed = request.TaskTypes.Where(t => Array.IndexOf(worker.Capabilities, t) >= 0).ToArray();
        if (allowed.Length == 0)
        {
            throw Refuse(request.WorkerId, "NO_CAPABLE_TASK_TYPES",
                $"none of the requested task types is among the worker's capabilities ({string.Join(", ", worker.Capabilities)})");
        }
        return allowed;
    }

    private static PreconditionFailedException Refuse(string workerId, string reason, string message) =>
        new(reason, $"Worker {workerId} may not lease: {message}.") { Metadata = { ["worker_id"] = workerId } };

    [LoggerMessage(EventId = 1401, Level = LogLevel.Warning, Message = "Redis unreachable; admitting worker {WorkerId} without an eligibility check")]
    private static partial void LogFailOpen(ILogger logger, string workerId, Exception exception);
}

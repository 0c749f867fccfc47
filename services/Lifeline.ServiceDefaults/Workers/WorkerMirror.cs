using System.Globalization;
using StackExchange.Redis;

namespace Lifeline.ServiceDefaults.Workers;

/// <summary>
/// The Redis mirror of worker state that the registry writes and the queue reads on its lease path
/// (no registry call per lease). Redis may lose it: the registry rewrites a worker's entry on its next
/// heartbeat, and PostgreSQL in the registry stays the record.
/// <para>
/// Every key of a tenant starts with the hash tag <c>{lifeline:registry:TENANT}</c>, so all of them share one Redis
/// Cluster slot: the registry's scripts and transactions, which touch a worker's entry, its heartbeat and the tenant's
/// deadlines together, stay atomic on a cluster. Only <see cref="Tenants"/> is outside, and nothing touches it
/// together with another key.
/// </para>
/// <list type="table">
/// <item><term><c>{lifeline:registry:TENANT}:worker:ID</c></term><description>hash: name, type, status, epoch,
/// capabilities (newline-separated), deregistered (0/1), breaker (closed/open/half_open), breaker_reset_at
/// (unix ms), running (newline-separated task ids), load, beat_at (unix ms).</description></item>
/// <item><term><c>{lifeline:registry:TENANT}:worker-alive:ID</c></term><description>the heartbeat: the session
/// epoch, with a TTL of 3 × the heartbeat interval.</description></item>
/// <item><term><c>{lifeline:registry:TENANT}:worker-commands:ID</c></term><description>list of pending commands
/// (serialized <c>lifeline.registry.v1.WorkerCommand</c>); <see cref="CommandsChannel"/> announces new ones.</description></item>
/// <item><term><c>{lifeline:registry:TENANT}:deadlines</c></term><description>the tenant's heartbeat deadlines
/// (member <c>TENANT/ID</c>, score = expiry in unix ms).</description></item>
/// <item><term><c>lifeline:registry:tenants</c></term><description>set of the tenants that have deadlines.</description></item>
/// </list>
/// Before the hash tags the keys were <c>lifeline:worker:TENANT:ID</c> (and <c>worker-alive</c>, <c>worker-commands</c>)
/// and one <c>lifeline:registry:deadlines</c>: after an upgrade the registry rewrites each worker's entry from
/// PostgreSQL at its first heartbeat; the old keys are no longer read (the heartbeat keys expire, the rest can be deleted).
/// </summary>
public static class WorkerMirror
{
    /// <summary>The hash tag, and key prefix, of everything the mirror holds for <paramref name="tenant"/>.</summary>
    public static string TenantSlot(string tenant) => $"{{lifeline:registry:{tenant}}}";

    public static RedisKey WorkerKey(string tenant, string workerId) => $"{TenantSlot(tenant)}:worker:{workerId}";
    public static RedisKey AliveKey(string tenant, string workerId) => $"{TenantSlot(tenant)}:worker-alive:{workerId}";
    public static RedisKey CommandsKey(string tenant, string workerId) => $"{TenantSlot(tenant)}:worker-commands:{workerId}";

    /// <summary>Deadlines of a tenant's heartbeats (member <c>{tenant}/{id}</c>, score = expiry in unix ms).</summary>
    public static RedisKey DeadlinesKey(string tenant) => $"{TenantSlot(tenant)}:deadlines";

    /// <summary>The tenants whose <see cref="DeadlinesKey"/> the registry looks at.</summary>
    public static readonly RedisKey Tenants = "lifeline:registry:tenants";

    /// <summary>Pub/sub channel: message <c>{tenant}/{id}</c> when a worker has new commands.</summary>
    public static readonly RedisChannel CommandsChannel = RedisChannel.Literal("lifeline:worker-commands");

    /// <summary>Queues a serialized <c>WorkerCommand</c> for a worker and announces it to its heartbeat stream.</summary>
    public static async Task PushCommandAsync(IConnectionMultiplexer redis, string tenant, string workerId, byte[] command)
    {
        await redis.GetDatabase().ListRightPushAsync(CommandsKey(tenant, workerId), command);
        await redis.GetSubscriber().PublishAsync(CommandsChannel, $"{tenant}/{workerId}");
    }

    private static readonly RedisValue[] EligibilityFields = ["status", "capabilities", "deregistered", "breaker", "breaker_reset_at"];

    /// <summary>Reads what the queue needs to decide whether a worker may lease; null when the mirror has no entry.</summary>
    public static async Task<WorkerEligibility?> ReadEligibilityAsync(IDatabaseAsync redis, string tenant, string workerId)
    {
        var values = await redis.HashGetAsync(WorkerKey(tenant, workerId), EligibilityFields);
        if (values[0].IsNull)
        {
            return null;
        }
        var capabilities = values[1].IsNullOrEmpty ? [] : ((string)values[1]!).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var resetAt = values[4].IsNullOrEmpty ? (DateTimeOffset?)null
            : DateTimeOffset.FromUnixTimeMilliseconds(long.Parse((string)values[4]!, CultureInfo.InvariantCulture));
        return new WorkerEligibility((string)values[0]!, capabilities, values[2] == "1", values[3].IsNullOrEmpty ? "closed" : (string)values[3]!, resetAt);
    }

    private static readonly RedisValue[] LivenessFields = ["status", "deregistered"];

    /// <summary>
    /// Reads whether a worker is alive (its heartbeat key and the state fields of its entry) in one MULTI/EXEC,
    /// so both come from the same moment. Redis failures are thrown, never guessed around.
    /// </summary>
    public static async Task<WorkerLiveness> ReadLivenessAsync(IDatabase redis, string tenant, string workerId)
    {
        var transaction = redis.CreateTransaction();
        var beating = transaction.KeyExistsAsync(AliveKey(tenant, workerId));
        var fields = transaction.HashGetAsync(WorkerKey(tenant, workerId), LivenessFields);
        await transaction.ExecuteAsync();
        var values = await fields;
        return new WorkerLiveness(await beating, !values[0].IsNull, values[0].IsNull ? null : (string)values[0]!, values[1] == "1");
    }
}

/// <summary>A worker's eligibility for new leases, as mirrored in Redis.</summary>
public sealed record WorkerEligibility(string Status, string[] Capabilities, bool Deregistered, string Breaker, DateTimeOffset? BreakerResetAt)
{
    /// <summary>Why the worker may not lease now (an ErrorInfo reason and message), or null when it may.</summary>
    public (string Reason, string Message)? Refusal(DateTimeOffset now)
    {
        if (Deregistered)
        {
            return ("WORKER_DEREGISTERED", "the worker is deregistered; register it again to lease");
        }
        if (Status == "offline")
        {
            return ("WORKER_OFFLINE", "the worker is offline (its heartbeat lapsed); heartbeat to come back");
        }
        if (Status == "draining")
        {
            return ("WORKER_DRAINING", "the worker is draining and gets no new work");
        }
        // An open breaker whose reset time passed is half-open: work flows again on trial.
        if (Breaker == "open" && (BreakerResetAt is null || BreakerResetAt > now))
        {
            return ("CIRCUIT_OPEN", $"the worker's circuit breaker is open until {BreakerResetAt:O}");
        }
        return null;
    }
}

/// <summary>Whether a worker is alive, as mirrored in Redis: its heartbeat key and the state fields of its entry.</summary>
public sealed record WorkerLiveness(bool Beating, bool HasEntry, string? Status, bool Deregistered)
{
    /// <summary>Alive: its heartbeat key exists and the registry has not marked it offline or deregistered.</summary>
    public bool IsAlive => Beating && !Deregistered && Status != "offline";

    /// <summary>The mirror knows nothing of the worker (no heartbeat key, no entry): Redis may have lost it, so liveness is unknown.</summary>
    public bool IsUnknown => !Beating && !HasEntry;
}

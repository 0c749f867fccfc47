using System.Globalization;
using Google.Protobuf;
using Lifeline.Registry.Breakers;
using Lifeline.Registry.Options;
using Lifeline.Registry.V1;
using Lifeline.Registry.Workers;
using Lifeline.ServiceDefaults.Workers;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lifeline.Registry.Heartbeats;

/// <summary>The outcome of one heartbeat script run.</summary>
public enum BeatResult
{
    Accepted,
    UnknownInRedis,
    StaleSession,
    Deregistered,
}

/// <summary>How a lapse claim ended.</summary>
public enum LapseClaimResult
{
    Won,
    NotLapsed,
    MirrorMissing,
}

/// <summary>The result of <see cref="RedisMirror.ClaimLapseAsync"/>: the worker's last running tasks when won.</summary>
public sealed record LapseClaim(LapseClaimResult Result, string[] Running);

/// <summary>What a heartbeat changed.</summary>
public sealed record Beat(BeatResult Result, string Status, bool WasOffline, long CurrentEpoch, IReadOnlyList<WorkerCommand> Commands);

/// <summary>
/// Writes the registry's state into the Redis layout described by <see cref="WorkerMirror"/>. The
/// heartbeat and the lapse claim are Lua scripts, so each is one atomic round trip; every key a script (or a
/// transaction, or a multi-key delete) touches is one tenant's, in that tenant's hash-tag slot.
/// </summary>
public sealed class RedisMirror(IConnectionMultiplexer redis, IOptions<RegistryOptions> options)
{
    // KEYS (one tenant's slot): worker hash, alive key, deadlines zset, commands list
    // ARGV: epoch, status ('' keeps), running (newline-separated), load, now ms, ttl ms, zset member
    private const string HeartbeatScript = """
        if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0, '', 0} end
        local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
        if tonumber(ARGV[1]) ~= epoch then return {-2, epoch, '', 0} end
        if redis.call('HGET', KEYS[1], 'deregistered') == '1' then return {-3, epoch, '', 0} end
        local status = redis.call('HGET', KEYS[1], 'status')
        local was_offline = 0
        if status == 'offline' then was_offline = 1; status = 'online' end
        if status ~= 'draining' and ARGV[2] ~= '' then status = ARGV[2] end
        redis.call('HSET', KEYS[1], 'status', status, 'running', ARGV[3], 'load', ARGV[4], 'beat_at', ARGV[5])
        redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[6])
        redis.call('ZADD', KEYS[3], tonumber(ARGV[5]) + tonumber(ARGV[6]), ARGV[7])
        local commands = redis.call('LRANGE', KEYS[4], 0, -1)
        if #commands > 0 then redis.call('DEL', KEYS[4]) end
        return {0, epoch, status, was_offline, unpack(commands)}
        """;

    // Claims a lapse once: only if the heartbeat is really gone and the worker is not already offline.
    // KEYS (one tenant's slot): worker hash, alive key, deadlines zset; ARGV: member, now ms
    private const string ClaimLapseScript = """
        if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
        local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
        if score and tonumber(score) > tonumber(ARGV[2]) then return {0} end
        redis.call('ZREM', KEYS[3], ARGV[1])
        if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
        local status = redis.call('HGET', KEYS[1], 'status')
        if status == 'offline' or redis.call('HGET', KEYS[1], 'deregistered') == '1' then return {0} end
        redis.call('HSET', KEYS[1], 'status', 'offline')
        return {1, redis.call('HGET', KEYS[1], 'running') or ''}
        """;

    private IDatabase Db => redis.GetDatabase();

    private static string Member(string tenant, Guid id) => $"{tenant}/{id}";

    public static long UnixMs(DateTime utc) => new DateTimeOffset(DateTime.SpecifyKind(utc, DateTimeKind.Utc)).ToUnixTimeMilliseconds();

    /// <summary>Writes a worker's whole entry (registration, or repair after Redis lost it) and starts its heartbeat clock.</summary>
    public async Task WriteWorkerAsync(WorkerRecord w, BreakerState breaker, bool alive)
    {
        var key = WorkerMirror.WorkerKey(w.TenantId, w.Id.ToString());
        var now = DateTime.UtcNow;
        var batch = Db.CreateBatch();
        var tasks = new List<Task>
        {
            batch.SetAddAsync(WorkerMirror.Tenants, w.TenantId),
            batch.HashSetAsync(key,
            [
                new("name", w.Name), new("type", w.Type), new("status", w.Status), new("epoch", w.SessionEpoch),
                new("capabilities", string.Join('\n', w.Capabilities)), new("deregistered", w.DeregisteredAt is null ? "0" : "1"),
                new("breaker", breaker.State), new("breaker_reset_at", breaker.ResetAt is { } r ? UnixMs(r) : RedisValue.EmptyString),
                new("running", string.Join('\n', w.RunningTaskIds)), new("load", w.Load.ToString(CultureInfo.InvariantCulture)),
                new("beat_at", UnixMs(w.LastHeartbeatAt ?? now)),
            ]),
        };
        if (alive)
        {
            var ttl = options.Value.HeartbeatTtl;
            tasks.Add(batch.StringSetAsync(WorkerMirror.AliveKey(w.TenantId, w.Id.ToString()), w.SessionEpoch, ttl));
            tasks.Add(batch.SortedSetAddAsync(WorkerMirror.DeadlinesKey(w.TenantId), Member(w.TenantId, w.Id), UnixMs(now) + (long)ttl.TotalMilliseconds));
        }
        batch.Execute();
        await Task.WhenAll(tasks);
    }

    public async Task<Beat> HeartbeatAsync(string tenant, Guid id, long epoch, string? status, IReadOnlyList<string> running, double load)
    {
        var ws = id.ToString();
        var ttl = options.Value.HeartbeatTtl;
        var result = (RedisResult[])(await Db.ScriptEvaluateAsync(HeartbeatScript,
            [WorkerMirror.WorkerKey(tenant, ws), WorkerMirror.AliveKey(tenant, ws), WorkerMirror.DeadlinesKey(tenant), WorkerMirror.CommandsKey(tenant, ws)],
            [epoch, status ?? "", string.Join('\n', running), load.ToString(CultureInfo.InvariantCulture), UnixMs(DateTime.UtcNow),
                (long)ttl.TotalMilliseconds, Member(tenant, id)]))!;
        var code = (int)result[0];
        var currentEpoch = (long)result[1];
        if (code != 0)
        {
            var outcome = code switch { -1 => BeatResult.UnknownInRedis, -2 => BeatResult.StaleSession, _ => BeatResult.Deregistered };
            return new Beat(outcome, "", false, currentEpoch, []);
        }
        var commands = result.Skip(4).Select(r => WorkerCommand.Parser.ParseFrom((byte[])r!)).ToList();
        return new Beat(BeatResult.Accepted, (string)result[2]!, (int)result[3] == 1, currentEpoch, commands);
    }

    /// <summary>
    /// Workers whose heartbeat deadline passed, the longest lapsed first, at most <paramref name="max"/> (candidates;
    /// <see cref="ClaimLapseAsync"/> decides). Every tenant's deadlines are read at once.
    /// </summary>
    public async Task<IReadOnlyList<(string Tenant, Guid Id)>> LapsedAsync(DateTime now, int max)
    {
        var tenants = await Db.SetMembersAsync(WorkerMirror.Tenants);
        var lapsed = await Task.WhenAll(tenants.Select(t => Db.SortedSetRangeByScoreWithScoresAsync(
            WorkerMirror.DeadlinesKey((string)t!), double.NegativeInfinity, UnixMs(now), take: max)));
        return lapsed.SelectMany(entries => entries).OrderBy(e => e.Score).Take(max)
            .Select(e => (string)e.Element!).Select(m => (m[..m.LastIndexOf('/')], Guid.Parse(m[(m.LastIndexOf('/') + 1)..]))).ToList();
    }

    /// <summary>
    /// Atomically marks a lapsed worker offline in Redis: <see cref="LapseClaimResult.Won"/> (with its last running
    /// tasks) for exactly one caller; <see cref="LapseClaimResult.NotLapsed"/> when it beats again or was already
    /// claimed; <see cref="LapseClaimResult.MirrorMissing"/> when Redis has no entry for it (PostgreSQL decides).
    /// </summary>
    public async Task<LapseClaim> ClaimLapseAsync(string tenant, Guid id, DateTime now)
    {
        var ws = id.ToString();
        var result = (RedisResult[])(await Db.ScriptEvaluateAsync(ClaimLapseScript,
            [WorkerMirror.WorkerKey(tenant, ws), WorkerMirror.AliveKey(tenant, ws), WorkerMirror.DeadlinesKey(tenant)],
            [Member(tenant, id), UnixMs(now)]))!;
        return (int)result[0] switch
        {
            1 => new LapseClaim(LapseClaimResult.Won, ((string)result[1]!).Split('\n', StringSplitOptions.RemoveEmptyEntries)),
            2 => new LapseClaim(LapseClaimResult.MirrorMissing, []),
            _ => new LapseClaim(LapseClaimResult.NotLapsed, []),
        };
    }

    public Task<bool> IsAliveAsync(string tenant, Guid id) => Db.KeyExistsAsync(WorkerMirror.AliveKey(tenant, id.ToString()));

    /// <summary>Live fields of a worker (status, running, load, last beat), or null when the mirror has none.</summary>
    public async Task<(string Status, string[] Running, double Load, DateTime BeatAt)?> LiveAsync(string tenant, Guid id)
    {
        var v = await Db.HashGetAsync(WorkerMirror.WorkerKey(tenant, id.ToString()), ["status", "running", "load", "beat_at"]);
        if (v[0].IsNull || v[3].IsNull)
        {
            return null;
        }
        return ((string)v[0]!, ((string?)v[1] ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries),
            double.Parse((string)v[2]! ?? "0", CultureInfo.InvariantCulture),
            DateTimeOffset.FromUnixTimeMilliseconds((long)v[3]).UtcDateTime);
    }

    public Task SetStatusAsync(string tenant, Guid id, string status) =>
        Db.HashSetAsync(WorkerMirror.WorkerKey(tenant, id.ToString()), "status", status);

    public async Task SetBreakerAsync(string tenant, Guid id, BreakerState breaker)
    {
        var key = WorkerMirror.WorkerKey(tenant, id.ToString());
        if (await Db.KeyExistsAsync(key))
        {
            await Db.HashSetAsync(key,
            [
                new("breaker", breaker.State),
                new("breaker_reset_at", breaker.ResetAt is { } r ? UnixMs(r) : RedisValue.EmptyString),
            ]);
        }
    }

    public async Task MarkDeregisteredAsync(string tenant, Guid id)
    {
        var ws = id.ToString();
        await Db.HashSetAsync(WorkerMirror.WorkerKey(tenant, ws), [new("deregistered", "1"), new("status", "offline")]);
        await Db.KeyDeleteAsync([WorkerMirror.AliveKey(tenant, ws), WorkerMirror.CommandsKey(tenant, ws)]);
        await Db.SortedSetRemoveAsync(WorkerMirror.DeadlinesKey(tenant), Member(tenant, id));
    }

    public async Task RemoveAsync(string tenant, Guid id)
    {
        var ws = id.ToString();
        await Db.KeyDeleteAsync([WorkerMirror.WorkerKey(tenant, ws), WorkerMirror.AliveKey(tenant, ws), WorkerMirror.CommandsKey(tenant, ws)]);
        await Db.SortedSetRemoveAsync(WorkerMirror.DeadlinesKey(tenant), Member(tenant, id));
    }

    /// <summary>Queues a command for a worker and announces it to heartbeat streams.</summary>
    public Task PushCommandAsync(string tenant, Guid id, WorkerCommand command) =>
        WorkerMirror.PushCommandAsync(redis, tenant, id.ToString(), command.ToByteArray());

    /// <summary>Takes the pending commands of a worker (heartbeat streams call this when announced).</summary>
    public async Task<IReadOnlyList<WorkerCommand>> TakeCommandsAsync(string tenant, Guid id)
    {
        var key = WorkerMirror.CommandsKey(tenant, id.ToString());
        var tx = Db.CreateTransaction();
        var range = tx.ListRangeAsync(key);
        _ = tx.KeyDeleteAsync(key);
        await tx.ExecuteAsync();
        return (await range).Select(v => WorkerCommand.Parser.ParseFrom((byte[])v!)).ToList();
    }
}

using Lifeline.Recovery.Options;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Lifeline.Recovery.Leadership;

/// <summary>A leadership term: this instance leads under <see cref="Token"/> until <see cref="Lost"/> fires.</summary>
public sealed record LeaderTerm(long Token, DateTime Since, CancellationToken Lost);

/// <summary>
/// Elects one acting recovery instance. The lease is a Redis key (<c>lifeline:recovery:leader</c> =
/// instance and token) with a TTL of <c>LeaderLeaseDuration</c>, taken with a fresh fencing token
/// from <c>INCR lifeline:recovery:leader-token</c> and renewed every third of the lease. A standby
/// retries at the same pace, so it takes over within one lease period after the leader dies. The
/// token is also written to <c>leader_fence</c> in PostgreSQL (only ever upwards): actions are
/// recorded only under the newest token, so a leader that was paused past its lease cannot write
/// after a successor started. A leader that cannot renew (Redis unreachable) steps down when its
/// lease would have run out.
/// </summary>
public sealed partial class RecoveryLeader(
    IConnectionMultiplexer redis, NpgsqlDataSource dataSource, IOptions<RecoveryOptions> options, TimeProvider time, ILogger<RecoveryLeader> logger)
    // Retried at the renewal pace whatever failed: a leader that cannot renew must notice in time to step down.
    : BackgroundLoop(logger, LoopBackoff.Between(options.Value.LeaderLeaseDuration / 3, options.Value.LeaderLeaseDuration / 3), time)
{
    public const string LeaseKey = "lifeline:recovery:leader";
    public const string TokenKey = "lifeline:recovery:leader-token";

    // Take the lease if free (with a new token), keep it if ours; returns {token, holder}. 0 = someone else holds it.
    private const string AcquireScript = """
        local current = redis.call('GET', KEYS[1])
        if not current then
          local token = redis.call('INCR', KEYS[2])
          redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
          return {token, ARGV[1]}
        end
        local sep = string.find(current, '|', 1, true)
        local holder = string.sub(current, 1, sep - 1)
        local token = tonumber(string.sub(current, sep + 1))
        if holder == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return {token, holder}
        end
        return {0, holder}
        """;

    // Give the lease up only if it is still ours.
    private const string ReleaseScript = """
        local current = redis.call('GET', KEYS[1])
        if current and string.sub(current, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then
          return redis.call('DEL', KEYS[1])
        end
        return 0
        """;

    private readonly Lock _gate = new();
    private DateTime _lastRenewed = DateTime.MinValue;
    private CancellationTokenSource? _termSource;
    private LeaderTerm? _term;
    private TaskCompletionSource<LeaderTerm> _nextTerm = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Instance { get; } = options.Value.InstanceId ?? $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";

    /// <summary>How often the lease is renewed (and a standby tries to take it): a third of the lease.</summary>
    private TimeSpan Pace => options.Value.LeaderLeaseDuration / 3;

    /// <summary>The current term, or null when this instance does not lead.</summary>
    public LeaderTerm? Term
    {
        get
        {
            lock (_gate)
            {
                return _term;
            }
        }
    }

    /// <summary>The instance that holds the lease according to Redis (empty when none), and its token.</summary>
    public async Task<(string Holder, long Token)> ReadLeaseAsync()
    {
        var value = (string?)await redis.GetDatabase().StringGetAsync(LeaseKey);
        var sep = value?.IndexOf('|', StringComparison.Ordinal) ?? -1;
        if (value is null || sep < 0)
        {
            return ("", 0);
        }
        return (value[..sep], long.Parse(value[(sep + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>Waits until this instance leads and returns the term.</summary>
    public async Task<LeaderTerm> WaitForTermAsync(CancellationToken ct)
    {
        Task<LeaderTerm> next;
        lock (_gate)
        {
            if (_term is { } term)
            {
                return term;
            }
            next = _nextTerm.Task;
        }
        return await next.WaitAsync(ct);
    }

    /// <summary>Takes or renews the lease; a leader that could not renew steps down when its lease would have run out.</summary>
    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        var lease = options.Value.LeaderLeaseDuration;
        try
        {
            var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(AcquireScript,
                [LeaseKey, TokenKey], [Instance, (long)lease.TotalMilliseconds]))!;
            var token = (long)result[0];
            if (token > 0 && await FenceAsync(token, stoppingToken))
            {
                _lastRenewed = Time.GetUtcNow().UtcDateTime;
                BeginTerm(token);
            }
            else
            {
                EndTerm(token > 0 ? "a newer leader token is recorded" : $"{(string?)result[1]} holds the lease");
            }
        }
        catch
        {
            if (Term is not null && Time.GetUtcNow().UtcDateTime - _lastRenewed >= lease - Pace)
            {
                EndTerm("the lease could not be renewed before it ran out");
            }
            throw;
        }
        return Pace;
    }

    protected override async Task RunLastPassAsync(CancellationToken cancellationToken)
    {
        if (Term is not null)
        {
            EndTerm("shutting down");
            await redis.GetDatabase().ScriptEvaluateAsync(ReleaseScript, [LeaseKey], [Instance]);
        }
    }

    /// <summary>Records the token in PostgreSQL unless a newer one is there; false when this term is already superseded.</summary>
    private async Task<bool> FenceAsync(long token, CancellationToken ct)
    {
        if (Term?.Token == token)
        {
            return true;
        }
        await using var command = dataSource.CreateCommand(
            """
            INSERT INTO leader_fence (id, token, instance, updated_at) VALUES (1, @token, @instance, now())
            ON CONFLICT (id) DO UPDATE SET token = excluded.token, instance = excluded.instance, updated_at = now()
            WHERE leader_fence.token <= excluded.token
            """);
        command.Parameters.AddWithValue("token", token);
        command.Parameters.AddWithValue("instance", Instance);
        return await command.ExecuteNonQueryAsync(ct) == 1;
    }

    private void BeginTerm(long token)
    {
        lock (_gate)
        {
            if (_term?.Token == token)
            {
                return;
            }
            _termSource?.Cancel();
            _termSource?.Dispose();
            _termSource = new CancellationTokenSource();
            _term = new LeaderTerm(token, Time.GetUtcNow().UtcDateTime, _termSource.Token);
            _nextTerm.TrySetResult(_term);
        }
        LogLeading(logger, Instance, token);
    }

    private void EndTerm(string why)
    {
        lock (_gate)
        {
            if (_term is null)
            {
                return;
            }
            LogStepDown(logger, Instance, _term.Token, why);
            _term = null;
            _termSource?.Cancel();
            _termSource?.Dispose();
            _termSource = null;
            _nextTerm = new TaskCompletionSource<LeaderTerm>(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    [LoggerMessage(EventId = 4006, Level = LogLevel.Information, Message = "Recovery instance {Instance} leads with fencing token {Token}")]
    private static partial void LogLeading(ILogger logger, string instance, long token);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Warning, Message = "Recovery instance {Instance} stops leading (token {Token}): {Why}")]
    private static partial void LogStepDown(ILogger logger, string instance, long token, string why);
}

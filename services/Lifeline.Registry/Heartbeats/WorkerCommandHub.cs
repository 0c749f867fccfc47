using System.Collections.Concurrent;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;

namespace Lifeline.Registry.Heartbeats;

/// <summary>
/// Delivers "new commands" announcements (Redis pub/sub, so a command issued on any instance reaches the
/// instance holding the worker's heartbeat stream) to the local streams of that worker.
/// </summary>
public sealed partial class WorkerCommandHub : IDisposable
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<Guid, Func<Task>>> _subscribers = new();
    private readonly IConnectionMultiplexer _redis;
    private readonly ILogger<WorkerCommandHub> _logger;
    private readonly CancellationTokenSource _disposed = new();

    public WorkerCommandHub(IConnectionMultiplexer redis, ILogger<WorkerCommandHub> logger)
    {
        _redis = redis;
        _logger = logger;
        // Never block a request thread on Redis: subscribe in the background, trying again while Redis is unreachable
        // (meanwhile commands still reach workers with their next heartbeat).
        _ = new LoopRunner(nameof(WorkerCommandHub), logger).RunAsync(SubscribeAsync, _disposed.Token);
    }

    private async Task<TimeSpan> SubscribeAsync(CancellationToken ct)
    {
        await _redis.GetSubscriber().SubscribeAsync(WorkerMirror.CommandsChannel, (_, member) => Dispatch(member.ToString()));
        return LoopRunner.Done;
    }

    /// <summary>Calls <paramref name="onCommands"/> whenever commands are announced for the worker, until disposed.</summary>
    public IDisposable Subscribe(string tenant, Guid workerId, Func<Task> onCommands)
    {
        var member = $"{tenant}/{workerId}";
        var token = Guid.NewGuid();
        _subscribers.GetOrAdd(member, _ => new()).TryAdd(token, onCommands);
        _ = SafeInvoke(onCommands); // commands issued before the stream opened
        return new Subscription(() =>
        {
            if (_subscribers.TryGetValue(member, out var set))
            {
                set.TryRemove(token, out _);
            }
        });
    }

    private void Dispatch(string member)
    {
        if (_subscribers.TryGetValue(member, out var set))
        {
            foreach (var callback in set.Values)
            {
                _ = SafeInvoke(callback);
            }
        }
    }

    private async Task SafeInvoke(Func<Task> callback)
    {
        try
        {
            await callback();
        }
        catch (Exception ex) when (ex is RedisException or OperationCanceledException or InvalidOperationException or IOException)
        {
            LogDeliveryFailed(_logger, ex);
        }
    }

    public void Dispose()
    {
        _disposed.Cancel();
        _disposed.Dispose();
        try
        {
            _redis.GetSubscriber().Unsubscribe(WorkerMirror.CommandsChannel);
        }
        catch (RedisException)
        {
            // shutting down
        }
    }

    private sealed class Subscription(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }

    [LoggerMessage(EventId = 2301, Level = LogLevel.Debug, Message = "Could not push commands to a heartbeat stream; they stay queued for the next beat")]
    private static partial void LogDeliveryFailed(ILogger logger, Exception exception);
}

using System.Collections.Concurrent;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Lifeline.Queue.Events;

/// <summary>
/// Wakes long-polling LeaseTasks calls when tasks become ready. A change on this instance wakes its
/// own waiters directly and is published on Redis so other instances wake too. Redis may be down or
/// lose a message: waiters also poll on an interval, so a lost signal only delays, never loses, work.
/// </summary>
public sealed partial class ReadySignal : IDisposable
{
    public static readonly RedisChannel Channel = RedisChannel.Literal("lifeline:queue:ready");

    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new();
    private readonly IConnectionMultiplexer _redis;
    private readonly ILogger<ReadySignal> _logger;
    private readonly CancellationTokenSource _disposed = new();

    public ReadySignal(IConnectionMultiplexer redis, ILogger<ReadySignal> logger)
    {
        _redis = redis;
        _logger = logger;
        // Redis may be down when the service starts: subscribe in the background, trying again under the loop policy
        // (long polls poll meanwhile). Once subscribed, the multiplexer re-subscribes by itself after reconnects.
        _ = new LoopRunner(nameof(ReadySignal), logger).RunAsync(SubscribeAsync, _disposed.Token);
    }

    private async Task<TimeSpan> SubscribeAsync(CancellationToken ct)
    {
        await _redis.GetSubscriber().SubscribeAsync(Channel, (_, tenant) => WakeLocal(tenant.ToString()));
        return LoopRunner.Done;
    }

    /// <summary>
    /// What a waiter saw of a tenant's signal before it looked for work. Take it before the look (a lease attempt) and
    /// wait on it after an empty one: a signal that came in between — after the look's snapshot, before the wait —
    /// completes it, and the wait returns at once instead of sleeping through the work that signal announced.
    /// </summary>
    public readonly struct Watch
    {
        internal Watch(Task signal) => Signal = signal;

        internal Task Signal { get; }
    }

    /// <summary>The tenant's signal as it is now (see <see cref="Watch"/>).</summary>
    public Watch Observe(string tenant) =>
        new(_waiters.GetOrAdd(tenant, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task);

    /// <summary>
    /// Waits until tasks of the watched tenant may have become ready since <paramref name="watch"/> was taken, or the
    /// timeout passes.
    /// </summary>
    public static async Task WaitAsync(Watch watch, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await watch.Signal.WaitAsync(timeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            // The poll fallback: look again anyway.
        }
    }

    /// <summary>Announces that tasks of <paramref name="tenant"/> became ready (after the change committed).</summary>
    public void Notify(string tenant)
    {
        WakeLocal(tenant);
        // Never blocks the calling thread (it may be the thread that completes socket operations, see Program.cs):
        // the asynchronous publish takes the connection's write lock asynchronously.
        _ = PublishAsync(tenant);
    }

    private async Task PublishAsync(string tenant)
    {
        try
        {
            await _redis.GetSubscriber().PublishAsync(Channel, tenant, CommandFlags.FireAndForget);
        }
        catch (Exception ex) when (ex is RedisException or ObjectDisposedException)
        {
            LogPublishFailed(_logger, ex);
        }
    }

    private void WakeLocal(string tenant)
    {
        if (_waiters.TryRemove(tenant, out var signal))
        {
            signal.TrySetResult();
        }
    }

    public void Dispose()
    {
        _disposed.Cancel();
        _disposed.Dispose();
        try
        {
            _redis.GetSubscriber().Unsubscribe(Channel);
        }
        catch (RedisException)
        {
            // shutting down
        }
    }

    [LoggerMessage(EventId = 1202, Level = LogLevel.Debug, Message = "Could not publish a ready signal; other instances will find the work by polling")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception);
}

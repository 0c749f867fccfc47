using System.Diagnostics;
using Lifeline.Queue.Events;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace Lifeline.Queue.Tests;

/// <summary>
/// The ready signal must not lose a wake-up: a long poll (or an idle dispatch stream) looks for work, finds none, then
/// waits. A signal that arrives between its look's snapshot and the start of its wait announces work the look could not
/// see; a waiter that registered only when it began to wait slept through it until its poll interval (1 s). The watch
/// taken before the look closes that window. With Redis down, and against a real Redis (each instance's signal is also
/// published there, and comes back to it).
/// </summary>
public sealed class ReadySignalTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_signal_between_the_look_and_the_wait_ends_the_wait_at_once_even_with_Redis_down()
    {
        // Redis down: no echo of the instance's own publication comes back to paper over a lost local wake-up.
        await using var redis = await ConnectionMultiplexer.ConnectAsync("127.0.0.1:1,abortConnect=false,connectTimeout=200");
        using var signal = new ReadySignal(redis, NullLogger<ReadySignal>.Instance);
        var tenant = $"t-{Guid.NewGuid():N}";

        var watch = signal.Observe(tenant); // before the look
        signal.Notify(tenant); // the look's snapshot missed the task this announces
        var waited = Stopwatch.StartNew();
        await ReadySignal.WaitAsync(watch, TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.True(waited.Elapsed < TimeSpan.FromSeconds(1), $"the wait slept {waited.Elapsed.TotalMilliseconds:0} ms through a signal it had missed");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_signal_before_the_look_does_not_end_a_later_wait_and_another_tenants_signal_never_does()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        using var signal = new ReadySignal(redis, NullLogger<ReadySignal>.Instance);
        var tenant = $"t-{Guid.NewGuid():N}";
        signal.Notify(tenant); // seen by the look that follows: no reason to wake again
        await Task.Delay(200); // its echo through Redis has come back

        var watch = signal.Observe(tenant);
        signal.Notify($"other-{Guid.NewGuid():N}");
        var waited = Stopwatch.StartNew();
        await ReadySignal.WaitAsync(watch, TimeSpan.FromMilliseconds(600), CancellationToken.None);
        Assert.True(waited.Elapsed >= TimeSpan.FromMilliseconds(500), $"woke after {waited.Elapsed.TotalMilliseconds:0} ms without a signal of its tenant");

        // …and the next signal of its own tenant ends a wait on a watch taken before it, at once.
        var next = signal.Observe(tenant);
        var waiting = ReadySignal.WaitAsync(next, TimeSpan.FromSeconds(5), CancellationToken.None);
        waited.Restart();
        signal.Notify(tenant);
        await waiting;
        Assert.True(waited.Elapsed < TimeSpan.FromSeconds(1));
    }
}

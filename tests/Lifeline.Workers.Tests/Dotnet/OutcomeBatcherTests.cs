extern alias worker;
using System.Collections.Concurrent;
using System.Diagnostics;
using worker::Lifeline.Worker.Internal;

namespace Lifeline.Workers.Tests.Dotnet;

/// <summary>The .NET worker's completion batcher: a batch goes out after the window or when full.</summary>
public sealed class OutcomeBatcherTests
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Items_added_together_go_out_in_full_batches_and_the_rest_after_the_window()
    {
        var batches = new ConcurrentQueue<IReadOnlyList<int>>();
        var batcher = new OutcomeBatcher<int>(b => { batches.Enqueue(b); return Task.CompletedTask; }, TimeSpan.FromMilliseconds(5), 100);
        for (var i = 0; i < 250; i++)
        {
            batcher.Add(i);
        }

        await WaitUntilAsync(() => batches.Sum(b => b.Count) == 250);
        // Batches are sent concurrently: their order of arrival is not the point, their contents are.
        var ordered = batches.OrderBy(b => b[0]).ToList();
        Assert.Equal([100, 100, 50], ordered.Select(b => b.Count));
        Assert.Equal(Enumerable.Range(0, 250), ordered.SelectMany(b => b));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_lone_item_waits_for_the_window_and_no_longer_than_needed()
    {
        var sent = new TaskCompletionSource<IReadOnlyList<int>>(TaskCreationOptions.RunContinuationsAsynchronously);
        var batcher = new OutcomeBatcher<int>(b => { sent.TrySetResult(b); return Task.CompletedTask; }, TimeSpan.FromMilliseconds(200), 100);
        var clock = Stopwatch.StartNew();
        batcher.Add(1);
        batcher.Add(2);
        var batch = await sent.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal([1, 2], batch);
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(190), $"sent after {clock.Elapsed}");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task While_the_transport_groups_by_itself_each_item_goes_out_at_once_and_the_window_applies_again_after()
    {
        var atOnce = true;
        var batches = new ConcurrentQueue<IReadOnlyList<int>>();
        var batcher = new OutcomeBatcher<int>(b => { batches.Enqueue(b); return Task.CompletedTask; }, TimeSpan.FromMinutes(10), 100, () => Volatile.Read(ref atOnce));
        batcher.Add(1);
        batcher.Add(2);
        await WaitUntilAsync(() => batches.Count == 2);
        Assert.Equal([[1], [2]], batches.OrderBy(b => b[0]).Select(b => b.ToArray()));

        Volatile.Write(ref atOnce, false);
        batcher.Add(3);
        batcher.Add(4);
        await Task.Delay(200);
        Assert.Equal(2, batches.Count); // 3 and 4 wait for the (10 min) window
        await batcher.FlushAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal([3, 4], batches.Last());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Flush_sends_what_waits_at_once_and_waits_for_batches_being_sent()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var batches = new ConcurrentQueue<IReadOnlyList<int>>();
        var batcher = new OutcomeBatcher<int>(async b => { batches.Enqueue(b); await release.Task; }, TimeSpan.FromMinutes(10), 3);
        batcher.Add(1);
        batcher.Add(2);
        batcher.Add(3); // full: sent now, held in the send delegate
        batcher.Add(4);

        var flush = batcher.FlushAsync();
        await WaitUntilAsync(() => batches.Count == 2);
        Assert.False(flush.IsCompleted);
        release.SetResult();
        await flush.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal([[1, 2, 3], [4]], batches.OrderBy(b => b[0]).Select(b => b.ToArray()));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Without_a_window_every_item_goes_out_alone()
    {
        var batches = new ConcurrentQueue<IReadOnlyList<int>>();
        var batcher = new OutcomeBatcher<int>(b => { batches.Enqueue(b); return Task.CompletedTask; }, TimeSpan.Zero, 100);
        batcher.Add(1);
        batcher.Add(2);
        await batcher.FlushAsync();
        Assert.All(batches, b => Assert.Single(b));
        Assert.Equal(2, batches.Count);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(5);
        }
    }
}

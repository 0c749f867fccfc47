namespace Lifeline.Worker.Internal;

/// <summary>
/// Gathers items that arrive close together into batches: a batch goes out <see cref="Window"/> after its first item,
/// or at once when it holds <see cref="MaxBatch"/> items. Used for completions, so tasks that finish together cost one
/// <c>CompleteTasks</c> call. <see cref="FlushAsync"/> sends what waits and awaits every batch still being sent.
/// </summary>
/// <typeparam name="T">An item; the send delegate settles whatever the caller awaits for it.</typeparam>
internal sealed class OutcomeBatcher<T>
{
    private readonly Func<IReadOnlyList<T>, Task> _send;
    private readonly Lock _gate = new();
    private readonly HashSet<Task> _sending = [];
    private readonly Func<bool> _atOnce;
    private List<T> _pending = [];
    private long _generation;

    /// <param name="send">Sends one batch; must not throw (it settles each item itself).</param>
    /// <param name="window">How long the first item of a batch waits for others (zero: every item goes out alone, at once).</param>
    /// <param name="maxBatch">Most items in a batch.</param>
    /// <param name="atOnce">
    /// Asked for each item: true sends it (with whatever waits) at once instead of waiting out the window — for a
    /// transport that groups by itself, where waiting would only delay the item.
    /// </param>
    public OutcomeBatcher(Func<IReadOnlyList<T>, Task> send, TimeSpan window, int maxBatch, Func<bool>? atOnce = null)
    {
        ArgumentNullException.ThrowIfNull(send);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        _send = send;
        _atOnce = atOnce ?? (static () => false);
        Window = window;
        MaxBatch = maxBatch;
    }

    /// <summary>How long the first item of a batch waits for others.</summary>
    public TimeSpan Window { get; }

    /// <summary>Most items in a batch.</summary>
    public int MaxBatch { get; }

    /// <summary>Adds an item to the current batch, sending it when full.</summary>
    public void Add(T item)
    {
        List<T>? ready = null;
        long? timerFor = null;
        var atOnce = _atOnce();
        lock (_gate)
        {
            _pending.Add(item);
            if (_pending.Count >= MaxBatch || Window <= TimeSpan.Zero || atOnce)
            {
                ready = TakePending();
            }
            else if (_pending.Count == 1)
            {
                timerFor = _generation;
            }
        }

        if (ready is not null)
        {
            Start(ready);
        }
        else if (timerFor is { } generation)
        {
            _ = SendAfterWindowAsync(generation);
        }
    }

    /// <summary>Sends what waits now and completes when every batch handed to the send delegate has been sent.</summary>
    public async Task FlushAsync()
    {
        List<T>? ready;
        Task[] sending;
        lock (_gate)
        {
            ready = _pending.Count > 0 ? TakePending() : null;
        }

        if (ready is not null)
        {
            Start(ready);
        }

        lock (_gate)
        {
            sending = [.. _sending];
        }

        await Task.WhenAll(sending).ConfigureAwait(false);
    }

    private async Task SendAfterWindowAsync(long generation)
    {
        await Task.Delay(Window).ConfigureAwait(false);
        List<T>? ready = null;
        lock (_gate)
        {
            // Still the batch this timer was started for (not sent as full or flushed meanwhile).
            if (_generation == generation && _pending.Count > 0)
            {
                ready = TakePending();
            }
        }

        if (ready is not null)
        {
            Start(ready);
        }
    }

    /// <summary>Under the lock: the pending batch, replaced by a new one of the next generation.</summary>
    private List<T> TakePending()
    {
        var batch = _pending;
        _pending = [];
        _generation++;
        return batch;
    }

    private void Start(List<T> batch)
    {
        var sending = Task.Run(() => _send(batch));
        lock (_gate)
        {
            _sending.Add(sending);
        }

        _ = sending.ContinueWith(
            done =>
            {
                lock (_gate)
                {
                    _sending.Remove(done);
                }
            },
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }
}

namespace Lifeline.Worker;

/// <summary>Counts of what a <see cref="LifelineWorker"/> did with the tasks it leased and their outcomes. Thread-safe.</summary>
public sealed class WorkerStatistics
{
    private long _completed;
    private long _failed;
    private long _released;
    private long _abandoned;
    private long _retries;
    private long _journaled;
    private long _replayed;
    private long _refused;

    /// <summary>Completions the server accepted (delivered live or replayed from the journal).</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Failures the server accepted (delivered live or replayed); it may retry those tasks.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Tasks given back on shutdown, without using an attempt.</summary>
    public long Released => Interlocked.Read(ref _released);

    /// <summary>Tasks whose outcome was not reported: cancelled, lease lost, or never run (see also <see cref="Refused"/>).</summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    /// <summary>Calls carrying outcomes that were tried again after a transient failure (each attempt after the first counts).</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Outcomes written to the offline journal because they could not be delivered.</summary>
    public long Journaled => Interlocked.Read(ref _journaled);

    /// <summary>Outcomes from the journal the server accepted on replay (also counted in <see cref="Completed"/> or <see cref="Failed"/>).</summary>
    public long Replayed => Interlocked.Read(ref _replayed);

    /// <summary>
    /// Outcomes the server refused for good (live or on replay): a stale fencing token (the lease ended and the task has
    /// a new holder), a task no longer running, not found or invalid. Logged once each, never retried.
    /// </summary>
    public long Refused => Interlocked.Read(ref _refused);

    internal void AddCompleted() => Interlocked.Increment(ref _completed);

    internal void AddFailed() => Interlocked.Increment(ref _failed);

    internal void AddReleased() => Interlocked.Increment(ref _released);

    internal void AddAbandoned() => Interlocked.Increment(ref _abandoned);

    internal void AddRetry() => Interlocked.Increment(ref _retries);

    internal void AddJournaled(int count) => Interlocked.Add(ref _journaled, count);

    internal void AddReplayed() => Interlocked.Increment(ref _replayed);

    internal void AddRefused() => Interlocked.Increment(ref _refused);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Completed} completed, {Failed} failed, {Released} released, {Abandoned} abandoned, {Refused} refused; " +
        $"{Retries} retries, {Journaled} journaled, {Replayed} replayed";
}

namespace Lifeline.Worker;

/// <summary>Counts of what a <see cref="LifelineWorker"/> did with the tasks it leased. Thread-safe.</summary>
public sealed class WorkerStatistics
{
    private long _completed;
    private long _failed;
    private long _released;
    private long _abandoned;

    /// <summary>Tasks completed (the server accepted the result).</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Tasks failed (the server accepted the error; it may retry them).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Tasks given back on shutdown, without using an attempt.</summary>
    public long Released => Interlocked.Read(ref _released);

    /// <summary>Tasks whose outcome was not reported or was refused: cancelled, lease lost, or superseded.</summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    internal void AddCompleted() => Interlocked.Increment(ref _completed);

    internal void AddFailed() => Interlocked.Increment(ref _failed);

    internal void AddReleased() => Interlocked.Increment(ref _released);

    internal void AddAbandoned() => Interlocked.Increment(ref _abandoned);
}

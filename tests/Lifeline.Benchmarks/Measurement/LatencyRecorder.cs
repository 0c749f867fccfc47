using System.Diagnostics;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// Durations recorded from many concurrent callbacks (open-loop scenarios, where a call's completion runs
/// on whatever thread answers it): a preallocated array and one interlocked index, no lock.
/// Samples past the capacity are counted but not kept.
/// </summary>
internal sealed class LatencyRecorder(int capacity)
{
    private readonly long[] _ticks = new long[Math.Max(1, capacity)];
    private int _count;

    public int Count => Math.Min(Volatile.Read(ref _count), _ticks.Length);

    /// <summary>Records the time from <paramref name="startTimestamp"/> (a <see cref="Stopwatch"/> timestamp) to now.</summary>
    public void Record(long startTimestamp) => Add(Stopwatch.GetTimestamp() - startTimestamp);

    /// <summary>Records a duration in <see cref="Stopwatch"/> ticks.</summary>
    public void Add(long elapsedTicks)
    {
        var index = Interlocked.Increment(ref _count) - 1;
        if (index < _ticks.Length)
        {
            _ticks[index] = elapsedTicks;
        }
    }

    /// <summary>Null when nothing was recorded. Call once recording has stopped.</summary>
    public LatencySummary? Summarize() => Count == 0 ? null : CallTimings.Summarize(_ticks[..Count]);
}

/// <summary>Spread of a delay, in seconds (e.g. how long after its heartbeat lapsed a worker was reported lost).</summary>
internal sealed record DelayDistribution(int Count, double MinSeconds, double P50Seconds, double P90Seconds, double P99Seconds, double MaxSeconds)
{
    public static DelayDistribution? Of(IEnumerable<double> seconds)
    {
        var sorted = seconds.Order().ToArray();
        if (sorted.Length == 0)
        {
            return null;
        }

        double Percentile(double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
        return new DelayDistribution(sorted.Length, sorted[0], Percentile(0.50), Percentile(0.90), Percentile(0.99), sorted[^1]);
    }
}

using System.Diagnostics;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>Percentiles of one kind of call, in milliseconds.</summary>
internal sealed record LatencySummary(int Count, double P50Ms, double P90Ms, double P99Ms, double MaxMs);

/// <summary>
/// Durations of the calls one worker or caller made, per RPC name. Each worker owns its instance (no
/// locking on the hot path); a scenario merges them and sorts all samples for exact percentiles.
/// </summary>
internal sealed class CallTimings
{
    private readonly Dictionary<string, List<long>> _ticksByCall = new(StringComparer.Ordinal);

    public void Record(string call, long startTimestamp)
    {
        var elapsed = Stopwatch.GetTimestamp() - startTimestamp;
        if (!_ticksByCall.TryGetValue(call, out var samples))
        {
            samples = new List<long>(4096);
            _ticksByCall.Add(call, samples);
        }

        samples.Add(elapsed);
    }

    public static IReadOnlyDictionary<string, LatencySummary> Summarize(IEnumerable<CallTimings> parts)
    {
        return parts
            .SelectMany(part => part._ticksByCall)
            .GroupBy(entry => entry.Key, StringComparer.Ordinal)
            .OrderBy(group => group.Key, StringComparer.Ordinal)
            .ToDictionary(group => group.Key, group => Summarize(group.SelectMany(entry => entry.Value).ToArray()), StringComparer.Ordinal);
    }

    /// <summary>Exact percentiles of durations in <see cref="Stopwatch"/> ticks (sorts the array in place).</summary>
    public static LatencySummary Summarize(long[] ticks)
    {
        Array.Sort(ticks);
        double Percentile(double p) => ToMilliseconds(ticks[Math.Clamp((int)Math.Ceiling(p * ticks.Length) - 1, 0, ticks.Length - 1)]);
        return new LatencySummary(ticks.Length, Percentile(0.50), Percentile(0.90), Percentile(0.99), ToMilliseconds(ticks[^1]));
    }

    private static double ToMilliseconds(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

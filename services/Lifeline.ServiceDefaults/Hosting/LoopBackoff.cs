namespace Lifeline.ServiceDefaults.Hosting;

/// <summary>
/// How long a background loop waits after failed passes: <see cref="First"/> × 2^(failures−1), capped at
/// <see cref="Max"/>, up to a quarter shorter at random so instances that failed together do not retry together.
/// </summary>
public sealed record LoopBackoff(TimeSpan First, TimeSpan Max)
{
    /// <summary>1 s doubling up to 30 s.</summary>
    public static LoopBackoff Default { get; } = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));

    /// <summary>Never longer than <paramref name="max"/>, never shorter than <paramref name="first"/> (or <paramref name="max"/> when that is shorter).</summary>
    public static LoopBackoff Between(TimeSpan first, TimeSpan max) => new(first < max ? first : max, max);

    /// <summary>The wait after <paramref name="failures"/> failed passes in a row; <paramref name="random"/> in [0, 1).</summary>
    public TimeSpan After(int failures, double random)
    {
        var exponential = First.TotalMilliseconds * Math.Pow(2, Math.Clamp(failures - 1, 0, 30));
        var capped = Math.Min(exponential, Max.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (1 - 0.25 * random));
    }
}

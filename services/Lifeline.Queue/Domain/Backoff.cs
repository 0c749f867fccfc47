using Lifeline.Queue.V1;

namespace Lifeline.Queue.Domain;

/// <summary>A task's retry policy in the units the store keeps.</summary>
public sealed record RetrySchedule(BackoffStrategy Strategy, TimeSpan Initial, TimeSpan Maximum, double Jitter)
{
    public static readonly RetrySchedule Default = new(BackoffStrategy.Exponential, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5), 0.1);

    /// <summary>
    /// The delay before retry number <paramref name="retry"/> (1 for the first retry), capped at the
    /// maximum; jitter shortens it by a random fraction up to <see cref="Jitter"/> so retries of many
    /// tasks spread out instead of arriving together.
    /// </summary>
    public TimeSpan DelayBefore(int retry, double random01)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(retry, 1);
        var n = Math.Min(retry, 64);
        var factor = Strategy switch
        {
            BackoffStrategy.Fixed => 1d,
            BackoffStrategy.Linear => n,
            BackoffStrategy.Fibonacci => Fibonacci(n),
            _ => Math.Pow(2, n - 1),
        };
        var ms = Math.Min(Initial.TotalMilliseconds * factor, Maximum.TotalMilliseconds);
        ms *= 1 - (Jitter * random01);
        return TimeSpan.FromMilliseconds(Math.Max(0, ms));
    }

    private static double Fibonacci(int n)
    {
        double a = 1, b = 1;
        for (var i = 2; i < n; i++)
        {
            (a, b) = (b, a + b);
        }
        return n <= 2 ? 1 : b;
    }

    public static string StrategyName(BackoffStrategy strategy) => strategy switch
    {
        BackoffStrategy.Linear => "linear",
        BackoffStrategy.Fibonacci => "fibonacci",
        BackoffStrategy.Fixed => "fixed",
        _ => "exponential",
    };

    public static BackoffStrategy ParseStrategy(string name) => name switch
    {
        "linear" => BackoffStrategy.Linear,
        "fibonacci" => BackoffStrategy.Fibonacci,
        "fixed" => BackoffStrategy.Fixed,
        _ => BackoffStrategy.Exponential,
    };
}

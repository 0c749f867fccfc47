using Lifeline.Queue.Domain;
using Lifeline.Queue.V1;

namespace Lifeline.Queue.Tests.UnitTests;

/// <summary>RetrySchedule.DelayBefore: growth per strategy, the cap, and jitter (pure, no service).</summary>
public sealed class BackoffTests
{
    private static RetrySchedule Schedule(BackoffStrategy strategy, double initialSeconds, double maximumSeconds, double jitter = 0) =>
        new(strategy, TimeSpan.FromSeconds(initialSeconds), TimeSpan.FromSeconds(maximumSeconds), jitter);

    private static double[] Delays(RetrySchedule schedule, int retries, double random01 = 0) =>
        Enumerable.Range(1, retries).Select(n => schedule.DelayBefore(n, random01).TotalSeconds).ToArray();

    [Fact]
    public void Exponential_doubles_from_the_initial_interval_until_the_maximum()
    {
        Assert.Equal([1, 2, 4, 8, 10, 10, 10], Delays(Schedule(BackoffStrategy.Exponential, 1, 10), 7));
    }

    [Fact]
    public void Exponential_stays_at_the_maximum_for_huge_retry_numbers()
    {
        var schedule = Schedule(BackoffStrategy.Exponential, 1, 300);
        foreach (var retry in new[] { 64, 65, 1_000, int.MaxValue })
        {
            Assert.Equal(TimeSpan.FromSeconds(300), schedule.DelayBefore(retry, 0));
        }
    }

    [Fact]
    public void Linear_grows_by_the_initial_interval()
    {
        Assert.Equal([2, 4, 6, 8, 9], Delays(Schedule(BackoffStrategy.Linear, 2, 9), 5));
    }

    [Fact]
    public void Fibonacci_follows_1_1_2_3_5_8()
    {
        Assert.Equal([1, 1, 2, 3, 5, 8, 13, 20], Delays(Schedule(BackoffStrategy.Fibonacci, 1, 20), 8));
    }

    [Fact]
    public void Fixed_is_always_the_initial_interval()
    {
        Assert.Equal([3, 3, 3, 3], Delays(Schedule(BackoffStrategy.Fixed, 3, 60), 4));
    }

    [Fact]
    public void Unspecified_strategy_behaves_as_exponential()
    {
        Assert.Equal(Delays(Schedule(BackoffStrategy.Exponential, 1, 60), 6), Delays(Schedule(BackoffStrategy.Unspecified, 1, 60), 6));
    }

    [Theory]
    [InlineData(BackoffStrategy.Exponential)]
    [InlineData(BackoffStrategy.Linear)]
    [InlineData(BackoffStrategy.Fibonacci)]
    [InlineData(BackoffStrategy.Fixed)]
    public void Jitter_of_half_halves_the_delay_at_random_1_and_leaves_it_at_random_0(BackoffStrategy strategy)
    {
        var schedule = Schedule(strategy, 2, 100, jitter: 0.5);
        for (var retry = 1; retry <= 6; retry++)
        {
            var full = Schedule(strategy, 2, 100).DelayBefore(retry, 0);
            Assert.Equal(full, schedule.DelayBefore(retry, 0));
            Assert.Equal(full / 2, schedule.DelayBefore(retry, 1));
            Assert.Equal(full * 0.75, schedule.DelayBefore(retry, 0.5));
        }
    }

    [Fact]
    public void Jitter_applies_after_the_cap_so_a_capped_delay_never_exceeds_the_maximum()
    {
        var schedule = Schedule(BackoffStrategy.Exponential, 1, 10, jitter: 0.5);
        Assert.Equal(TimeSpan.FromSeconds(10), schedule.DelayBefore(20, 0));
        Assert.Equal(TimeSpan.FromSeconds(5), schedule.DelayBefore(20, 1));
    }

    [Fact]
    public void A_zero_initial_interval_retries_immediately()
    {
        Assert.Equal([0, 0, 0], Delays(Schedule(BackoffStrategy.Exponential, 0, 10), 3));
    }

    [Fact]
    public void The_default_policy_is_exponential_from_1s_to_5m_with_10_percent_jitter()
    {
        Assert.Equal(BackoffStrategy.Exponential, RetrySchedule.Default.Strategy);
        Assert.Equal(TimeSpan.FromSeconds(1), RetrySchedule.Default.DelayBefore(1, 0));
        Assert.Equal(TimeSpan.FromMilliseconds(900), RetrySchedule.Default.DelayBefore(1, 1));
        Assert.Equal(TimeSpan.FromMinutes(5), RetrySchedule.Default.DelayBefore(30, 0));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void Retry_numbers_start_at_one(int retry)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RetrySchedule.Default.DelayBefore(retry, 0));
    }

    [Theory]
    [InlineData(BackoffStrategy.Exponential, "exponential")]
    [InlineData(BackoffStrategy.Linear, "linear")]
    [InlineData(BackoffStrategy.Fibonacci, "fibonacci")]
    [InlineData(BackoffStrategy.Fixed, "fixed")]
    public void Strategy_names_round_trip(BackoffStrategy strategy, string name)
    {
        Assert.Equal(name, RetrySchedule.StrategyName(strategy));
        Assert.Equal(strategy, RetrySchedule.ParseStrategy(name));
    }
}

using Lifeline.Registry.Breakers;

namespace Lifeline.Registry.Tests.UnitTests;

/// <summary>The circuit-breaker state machine on its own: no store, no clock but the one passed in.</summary>
public sealed class CircuitBreakerPolicyTests
{
    private const int Threshold = 3;
    private static readonly TimeSpan OpenFor = TimeSpan.FromSeconds(30);
    private static readonly DateTime T0 = new(2026, 3, 1, 12, 0, 0, DateTimeKind.Utc);

    private static BreakerState Apply(BreakerState state, bool success, DateTime now) =>
        CircuitBreakerPolicy.Apply(state, success, now, Threshold, OpenFor);

    private static BreakerState Failures(BreakerState state, int count, DateTime now)
    {
        for (var i = 0; i < count; i++)
        {
            state = Apply(state, false, now);
        }
        return state;
    }

    [Fact]
    public void Failures_below_the_threshold_keep_the_breaker_closed_and_are_counted()
    {
        var state = Failures(BreakerState.Initial, Threshold - 1, T0);

        Assert.Equal(new BreakerState(BreakerState.Closed, Threshold - 1, null, null), state);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    public void The_nth_consecutive_failure_opens_the_breaker_until_now_plus_the_open_duration(int threshold)
    {
        var state = BreakerState.Initial;
        for (var i = 1; i < threshold; i++)
        {
            state = CircuitBreakerPolicy.Apply(state, false, T0, threshold, OpenFor);
            Assert.Equal(BreakerState.Closed, state.State);
        }

        var opened = CircuitBreakerPolicy.Apply(state, false, T0, threshold, OpenFor);

        Assert.Equal(new BreakerState(BreakerState.Open, threshold, T0 + OpenFor, T0), opened);
    }

    [Fact]
    public void A_success_resets_the_failure_count_so_failures_must_be_consecutive()
    {
        var state = Failures(BreakerState.Initial, Threshold - 1, T0);
        state = Apply(state, true, T0);
        Assert.Equal(BreakerState.Initial, state);

        state = Failures(state, Threshold - 1, T0);
        Assert.Equal(BreakerState.Closed, state.State);
        Assert.Equal(Threshold - 1, state.ConsecutiveFailures);
    }

    [Fact]
    public void An_open_breaker_stays_open_before_its_reset_time_and_a_late_failure_does_not_extend_it()
    {
        var open = Failures(BreakerState.Initial, Threshold, T0);
        var later = T0 + OpenFor - TimeSpan.FromMilliseconds(1);

        Assert.Same(open, CircuitBreakerPolicy.Effective(open, later));
        var afterLateFailure = Apply(open, false, later);

        Assert.Equal(BreakerState.Open, afterLateFailure.State);
        Assert.Equal(T0 + OpenFor, afterLateFailure.ResetAt); // not moved
        Assert.Equal(T0, afterLateFailure.OpenedAt);
        Assert.Equal(Threshold + 1, afterLateFailure.ConsecutiveFailures);
    }

    [Fact]
    public void Effective_turns_an_open_breaker_half_open_once_its_reset_time_is_reached()
    {
        var open = Failures(BreakerState.Initial, Threshold, T0);

        var atReset = CircuitBreakerPolicy.Effective(open, T0 + OpenFor);
        var afterReset = CircuitBreakerPolicy.Effective(open, T0 + OpenFor + TimeSpan.FromHours(1));

        Assert.Equal(new BreakerState(BreakerState.HalfOpen, Threshold, null, T0), atReset);
        Assert.Equal(atReset, afterReset);
    }

    [Fact]
    public void Effective_leaves_closed_and_half_open_breakers_alone()
    {
        var closed = Failures(BreakerState.Initial, 2, T0);
        var halfOpen = new BreakerState(BreakerState.HalfOpen, Threshold, null, T0);

        Assert.Same(closed, CircuitBreakerPolicy.Effective(closed, T0.AddDays(1)));
        Assert.Same(halfOpen, CircuitBreakerPolicy.Effective(halfOpen, T0.AddDays(1)));
    }

    [Fact]
    public void A_success_on_a_half_open_breaker_closes_it()
    {
        var open = Failures(BreakerState.Initial, Threshold, T0);

        var closed = Apply(open, true, T0 + OpenFor);

        Assert.Equal(BreakerState.Closed, closed.State);
        Assert.Equal(0, closed.ConsecutiveFailures);
        Assert.Null(closed.ResetAt);
    }

    [Fact]
    public void A_failure_on_a_half_open_breaker_opens_it_again_with_a_new_reset_time()
    {
        var open = Failures(BreakerState.Initial, Threshold, T0);
        var trial = T0 + OpenFor + TimeSpan.FromSeconds(5);

        var reopened = Apply(open, false, trial);

        Assert.Equal(new BreakerState(BreakerState.Open, Threshold + 1, trial + OpenFor, trial), reopened);
        Assert.Equal(BreakerState.Open, CircuitBreakerPolicy.Effective(reopened, trial + OpenFor - TimeSpan.FromTicks(1)).State);
        Assert.Equal(BreakerState.HalfOpen, CircuitBreakerPolicy.Effective(reopened, trial + OpenFor).State);
    }

    [Fact]
    public void A_half_open_breaker_reopens_on_its_first_failure_even_below_the_threshold()
    {
        var halfOpen = new BreakerState(BreakerState.HalfOpen, 0, null, T0);

        var reopened = Apply(halfOpen, false, T0.AddMinutes(1));

        Assert.Equal(BreakerState.Open, reopened.State);
        Assert.Equal(T0.AddMinutes(1) + OpenFor, reopened.ResetAt);
    }
}

namespace Lifeline.Registry.Breakers;

/// <summary>A breaker's state: <c>closed</c>, <c>open</c> (until <see cref="ResetAt"/>) or <c>half_open</c>.</summary>
public sealed record BreakerState(string State, int ConsecutiveFailures, DateTime? ResetAt, DateTime? OpenedAt)
{
    public const string Closed = "closed";
    public const string Open = "open";
    public const string HalfOpen = "half_open";

    public static readonly BreakerState Initial = new(Closed, 0, null, null);
}

/// <summary>
/// The circuit-breaker state machine, pure so it can be proven on its own:
/// Closed → Open after N consecutive failures; Open → HalfOpen once <c>reset_at</c> passes;
/// HalfOpen → Closed on a success, → Open again on a failure.
/// </summary>
public static class CircuitBreakerPolicy
{
    /// <summary>The state as of <paramref name="now"/>: an open breaker whose reset time passed is half-open.</summary>
    public static BreakerState Effective(BreakerState state, DateTime now) =>
        state.State == BreakerState.Open && state.ResetAt <= now ? state with { State = BreakerState.HalfOpen, ResetAt = null } : state;

    /// <summary>The state after one outcome.</summary>
    public static BreakerState Apply(BreakerState state, bool success, DateTime now, int threshold, TimeSpan openFor)
    {
        var current = Effective(state, now);
        if (success)
        {
            return current with { State = BreakerState.Closed, ConsecutiveFailures = 0, ResetAt = null };
        }
        var failures = current.ConsecutiveFailures + 1;
        return current.State switch
        {
            // A late failure of work leased before the breaker opened keeps it open until its reset time.
            BreakerState.Open => current with { ConsecutiveFailures = failures },
            BreakerState.HalfOpen => new BreakerState(BreakerState.Open, failures, now + openFor, now),
            _ when failures >= threshold => new BreakerState(BreakerState.Open, failures, now + openFor, now),
            _ => current with { ConsecutiveFailures = failures },
        };
    }
}

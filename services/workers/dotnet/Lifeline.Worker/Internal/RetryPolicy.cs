using System.Net.Http;
using System.Net.Sockets;
using Grpc.Core;

namespace Lifeline.Worker.Internal;

/// <summary>What to do about a failed call.</summary>
internal enum FailureKind
{
    /// <summary>The server answered and said no (stale token, wrong state, not found, invalid, denied): never retried.</summary>
    Final = 0,

    /// <summary>The call may succeed if tried again (the network, an overloaded or restarting service).</summary>
    Transient = 1,
}

/// <summary>
/// The contract's retry schedule for a call that failed transiently: <see cref="ImmediateRetries"/> retries at once
/// (a single dropped connection costs nothing), then exponential backoff with full jitter —
/// a random wait in [0, min(<see cref="MaxDelay"/>, <see cref="BaseDelay"/> × 2ⁿ)] — until
/// <see cref="GiveUpAfter"/> has passed since the first failure. Pure: the caller supplies time and randomness.
/// </summary>
internal sealed class RetryPolicy(TimeSpan giveUpAfter, int immediateRetries = 2, TimeSpan? baseDelay = null, TimeSpan? maxDelay = null)
{
    /// <summary>The contract's policy: 2 immediate retries, 100 ms × 2ⁿ up to 5 s a wait, for 10 s.</summary>
    public static RetryPolicy Default { get; } = new(TimeSpan.FromSeconds(10));

    /// <summary>Retries made at once after the first failure.</summary>
    public int ImmediateRetries { get; } = immediateRetries;

    /// <summary>The first backoff step's upper bound.</summary>
    public TimeSpan BaseDelay { get; } = baseDelay ?? TimeSpan.FromMilliseconds(100);

    /// <summary>The longest wait between two attempts.</summary>
    public TimeSpan MaxDelay { get; } = maxDelay ?? TimeSpan.FromSeconds(5);

    /// <summary>How long after the first failure retrying stops (the worker goes offline).</summary>
    public TimeSpan GiveUpAfter { get; } = giveUpAfter;

    /// <summary>
    /// The wait before the next attempt, or null to give up. <paramref name="failures"/> counts the failed attempts so
    /// far (1 after the first); <paramref name="sinceFirstFailure"/> is the time since the first one;
    /// <paramref name="random"/> is uniform in [0, 1).
    /// </summary>
    public TimeSpan? NextDelay(int failures, TimeSpan sinceFirstFailure, double random)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(failures, 1);
        if (sinceFirstFailure >= GiveUpAfter)
        {
            return null;
        }

        if (failures <= ImmediateRetries)
        {
            return TimeSpan.Zero;
        }

        var delay = Jittered(failures - ImmediateRetries - 1, random);
        var left = GiveUpAfter - sinceFirstFailure;
        return delay < left ? delay : left;
    }

    /// <summary>Backoff step <paramref name="step"/> (0, 1, 2, …) with full jitter: uniform in [0, min(max, base × 2^step)].</summary>
    public TimeSpan Jittered(int step, double random) => TimeSpan.FromTicks((long)(Cap(step).Ticks * Math.Clamp(random, 0, 1)));

    /// <summary>The upper bound of backoff step <paramref name="step"/>: min(<see cref="MaxDelay"/>, <see cref="BaseDelay"/> × 2^step).</summary>
    public TimeSpan Cap(int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        // 2^step overflows long quickly; past 40 doublings any base is beyond any sensible maximum.
        return step >= 40 ? MaxDelay : TimeSpan.FromTicks(Math.Min(MaxDelay.Ticks, BaseDelay.Ticks * (1L << step)));
    }

    /// <summary>
    /// The contract's classification: <c>UNAVAILABLE</c>, <c>DEADLINE_EXCEEDED</c>, <c>RESOURCE_EXHAUSTED</c> and
    /// <c>ABORTED</c> are transient, and so is a connection that broke under the call (reset, refused, closed), whatever
    /// code the client library gave it; everything else is final.
    /// </summary>
    public static FailureKind Classify(RpcException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return Classify(exception.StatusCode, exception.Status.DebugException);
    }

    /// <summary>The same from a status code and the client-side exception behind it, if any.</summary>
    public static FailureKind Classify(StatusCode code, Exception? debugException)
    {
        if (code is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.ResourceExhausted or StatusCode.Aborted)
        {
            return FailureKind.Transient;
        }

        // Grpc.Net.Client reports some broken connections as INTERNAL (e.g. the response ended prematurely);
        // the exception it wraps tells a broken connection from an error the server sent.
        if (code is StatusCode.Internal or StatusCode.Unknown or StatusCode.Cancelled && IsBrokenConnection(debugException))
        {
            return FailureKind.Transient;
        }

        return FailureKind.Final;
    }

    private static bool IsBrokenConnection(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is SocketException or IOException or HttpRequestException)
            {
                return true;
            }
        }

        return false;
    }
}

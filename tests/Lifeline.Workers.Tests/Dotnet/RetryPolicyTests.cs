extern alias worker;
using System.Net.Sockets;
using Grpc.Core;
using worker::Lifeline.Worker.Internal;

namespace Lifeline.Workers.Tests.Dotnet;

/// <summary>The .NET worker's retry schedule and its classification of failures (the README's table), without a server.</summary>
public sealed class RetryPolicyTests
{
    [Theory]
    [InlineData(StatusCode.Unavailable)]
    [InlineData(StatusCode.DeadlineExceeded)]
    [InlineData(StatusCode.ResourceExhausted)]
    [InlineData(StatusCode.Aborted)]
    public void The_contracts_transient_codes_are_retried(StatusCode code) =>
        Assert.Equal(FailureKind.Transient, RetryPolicy.Classify(new RpcException(new Status(code, "x"))));

    [Theory]
    [InlineData(StatusCode.FailedPrecondition)]
    [InlineData(StatusCode.NotFound)]
    [InlineData(StatusCode.InvalidArgument)]
    [InlineData(StatusCode.PermissionDenied)]
    [InlineData(StatusCode.Unauthenticated)]
    [InlineData(StatusCode.AlreadyExists)]
    [InlineData(StatusCode.Unimplemented)]
    [InlineData(StatusCode.Internal)]
    [InlineData(StatusCode.Unknown)]
    [InlineData(StatusCode.Cancelled)]
    public void Everything_else_the_server_says_is_final(StatusCode code) =>
        Assert.Equal(FailureKind.Final, RetryPolicy.Classify(new RpcException(new Status(code, "x"))));

    [Theory]
    [InlineData(StatusCode.Internal)]
    [InlineData(StatusCode.Unknown)]
    [InlineData(StatusCode.Cancelled)]
    public void A_connection_broken_under_the_call_is_transient_whatever_code_the_client_gave_it(StatusCode code)
    {
        var reset = new HttpRequestException("An error occurred while sending the request.",
            new IOException("Unable to read data from the transport connection", new SocketException((int)SocketError.ConnectionReset)));
        Assert.Equal(FailureKind.Transient, RetryPolicy.Classify(new RpcException(new Status(code, "Error reading next message.", reset))));
        Assert.Equal(FailureKind.Transient, RetryPolicy.Classify(code, new IOException("The response ended prematurely.")));
    }

    [Fact]
    public void Two_retries_go_at_once_then_backoff_starts_at_100_ms()
    {
        var policy = RetryPolicy.Default;
        Assert.Equal(TimeSpan.Zero, policy.NextDelay(1, TimeSpan.Zero, 0.99));
        Assert.Equal(TimeSpan.Zero, policy.NextDelay(2, TimeSpan.FromMilliseconds(5), 0.99));
        var third = policy.NextDelay(3, TimeSpan.FromMilliseconds(10), 0.999)!.Value;
        Assert.InRange(third, TimeSpan.FromMilliseconds(99), TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void Backoff_caps_double_from_100_ms_to_5_s()
    {
        var caps = Enumerable.Range(0, 10).Select(step => (int)RetryPolicy.Default.Cap(step).TotalMilliseconds).ToArray();
        Assert.Equal([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000], caps);
        Assert.Equal(TimeSpan.FromSeconds(5), RetryPolicy.Default.Cap(1000));
    }

    [Fact]
    public void Full_jitter_stays_within_zero_and_the_cap_and_spreads_over_it()
    {
        var policy = RetryPolicy.Default;
        var random = new Random(7);
        for (var step = 0; step < 12; step++)
        {
            var cap = policy.Cap(step);
            var draws = Enumerable.Range(0, 2000).Select(_ => policy.Jittered(step, random.NextDouble())).ToList();
            Assert.All(draws, d => Assert.InRange(d, TimeSpan.Zero, cap));
            // Full jitter: uniform over [0, cap], so the mean is near half the cap and the spread reaches both ends.
            Assert.InRange(draws.Average(d => d.Ticks) / cap.Ticks, 0.45, 0.55);
            Assert.True(draws.Min() < cap * 0.05 && draws.Max() > cap * 0.95, $"step {step}: draws do not cover [0, {cap}]");
        }

        Assert.Equal(TimeSpan.Zero, policy.Jittered(3, 0));
        Assert.Equal(policy.Cap(3), policy.Jittered(3, 1));
    }

    [Fact]
    public void Retrying_stops_10_s_after_the_first_failure_and_no_wait_overshoots_it()
    {
        var policy = RetryPolicy.Default;
        Assert.Null(policy.NextDelay(3, TimeSpan.FromSeconds(10), 0.5));
        Assert.Null(policy.NextDelay(50, TimeSpan.FromSeconds(11), 0.5));
        Assert.Equal(TimeSpan.FromMilliseconds(500), policy.NextDelay(20, TimeSpan.FromSeconds(9.5), 0.999));

        // A whole schedule, simulated: the waits add up to less than the budget and the last attempt is near its end.
        var random = new Random(11);
        var elapsed = TimeSpan.Zero;
        var attempts = 1;
        while (policy.NextDelay(attempts, elapsed, random.NextDouble()) is { } wait)
        {
            Assert.InRange(wait, TimeSpan.Zero, TimeSpan.FromSeconds(5));
            elapsed += wait + TimeSpan.FromMilliseconds(1); // each attempt takes a little time
            attempts++;
        }

        Assert.InRange(elapsed, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10.1));
        Assert.True(attempts > 5, $"only {attempts} attempts in 10 s");
    }

    [Fact]
    public void In_a_black_holed_network_the_window_also_ends_the_immediate_retries()
    {
        // The first attempt failed by a 10 s deadline: its failure counts from its start, so nothing is tried again.
        Assert.Null(RetryPolicy.Default.NextDelay(1, TimeSpan.FromSeconds(10), 0.5));
        // With a 4 s deadline: one immediate retry (4 s → 8 s), then the window is nearly spent and backoff fills the rest.
        Assert.Equal(TimeSpan.Zero, RetryPolicy.Default.NextDelay(1, TimeSpan.FromSeconds(4), 0.5));
        Assert.Equal(TimeSpan.Zero, RetryPolicy.Default.NextDelay(2, TimeSpan.FromSeconds(8), 0.5));
        Assert.Null(RetryPolicy.Default.NextDelay(3, TimeSpan.FromSeconds(12), 0.5));
    }

    [Fact]
    public void The_budget_is_the_options_offline_after()
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(2));
        Assert.NotNull(policy.NextDelay(4, TimeSpan.FromSeconds(1.9), 0.5));
        Assert.Null(policy.NextDelay(4, TimeSpan.FromSeconds(2), 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => policy.NextDelay(0, TimeSpan.Zero, 0.5));
    }
}

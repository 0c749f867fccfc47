using Lifeline.Queue.Reading;
using Lifeline.Queue.Reporting;

namespace Lifeline.Queue.Tests.UnitTests;

/// <summary>How a <c>recovered</c> history event is reported to the registry (pure, no service).</summary>
public sealed class RecoveredOutcomeTests
{
    private static TaskEventRecord Recovered(string fromStatus, string toStatus) => new(
        42, 7, Guid.NewGuid(), "demo.echo", "recovered", fromStatus, toStatus, Guid.NewGuid().ToString(), 3, "the worker stopped heartbeating",
        """{"action":"requeue","outcome":"requeued","error_code":"WORKER_LOST","duration_ms":1234}""", DateTime.UtcNow, "default");

    [Fact]
    public void A_lease_taken_from_a_lost_worker_is_reported_as_a_failure_of_that_worker_with_the_reason_code()
    {
        var e = Recovered("running", "pending");
        Assert.True(OutcomeReporter.IsAttemptOutcome(e));
        var outcome = OutcomeReporter.ToOutcome(e);
        Assert.False(outcome.Success);
        Assert.Equal("WORKER_LOST", outcome.ErrorCode);
        Assert.Equal(e.WorkerId, outcome.WorkerId);
        Assert.Equal(TimeSpan.FromMilliseconds(1234), outcome.Duration.ToTimeSpan());
        Assert.Equal("queue:7-42", outcome.OutcomeId);
    }

    [Fact]
    public void Retrying_a_timed_out_task_is_not_reported_again_its_timeout_was()
    {
        Assert.False(OutcomeReporter.IsAttemptOutcome(Recovered("timeout", "pending")));
        Assert.True(OutcomeReporter.IsAttemptOutcome(Recovered("assigned", "dead_lettered")));
    }
}

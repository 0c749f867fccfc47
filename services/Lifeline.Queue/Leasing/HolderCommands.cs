using Lifeline.Queue.Data;

namespace Lifeline.Queue.Leasing;

/// <summary>
/// A validated call of a task's lease holder (fencing token included), as a unary call or a message on a dispatch
/// stream makes it. Both are validated by the same code and applied by the same <see cref="LeaseHolderOperations"/> methods.
/// </summary>
public abstract record HolderCommand(Guid TaskId, long FencingToken)
{
    /// <summary>True for the calls that end the holder's attempt (complete, fail, release): on a dispatch stream they free a slot.</summary>
    public virtual bool EndsAttempt => false;
}

/// <summary>CompleteTask: the result is any JSON value, or none.</summary>
public sealed record CompleteCommand(Guid TaskId, long FencingToken, string? Result) : HolderCommand(TaskId, FencingToken)
{
    public override bool EndsAttempt => true;
}

/// <summary>FailTask.</summary>
public sealed record FailCommand(Guid TaskId, long FencingToken, FailureReport Failure) : HolderCommand(TaskId, FencingToken)
{
    public override bool EndsAttempt => true;
}

/// <summary>ReleaseTask: back to pending without counting an attempt, leasable after <paramref name="Delay"/>.</summary>
public sealed record ReleaseCommand(Guid TaskId, long FencingToken, string? Reason, TimeSpan Delay) : HolderCommand(TaskId, FencingToken)
{
    public override bool EndsAttempt => true;
}

/// <summary>ReportProgress: a null lease keeps the lease's current duration.</summary>
public sealed record ProgressCommand(Guid TaskId, long FencingToken, int Percent, string? Message, TimeSpan? LeaseDuration)
    : HolderCommand(TaskId, FencingToken);

/// <summary>ExtendLease.</summary>
public sealed record ExtendLeaseCommand(Guid TaskId, long FencingToken, TimeSpan LeaseDuration) : HolderCommand(TaskId, FencingToken);

/// <summary>StartTask.</summary>
public sealed record StartCommand(Guid TaskId, long FencingToken) : HolderCommand(TaskId, FencingToken);

public static class HolderCommandExtensions
{
    /// <summary>
    /// Applies a holder's call. Refusals (unknown task, stale token, a state that does not allow it) are thrown as
    /// the domain's exceptions, exactly as for the unary call.
    /// </summary>
    public static async Task<(TaskRecord Task, bool WillRetry)> ApplyAsync(this LeaseHolderOperations holders, string tenant, HolderCommand command,
        CancellationToken ct) => command switch
        {
            CompleteCommand c => (await holders.CompleteAsync(tenant, c.TaskId, c.FencingToken, c.Result, ct), false),
            FailCommand f => await holders.FailAsync(tenant, f.TaskId, f.FencingToken, f.Failure, ct),
            ReleaseCommand r => (await holders.ReleaseAsync(tenant, r.TaskId, r.FencingToken, r.Reason, r.Delay, ct), false),
            ProgressCommand p => (await holders.ReportProgressAsync(tenant, p.TaskId, p.FencingToken, p.Percent, p.Message, p.LeaseDuration, ct), false),
            ExtendLeaseCommand e => (await holders.ExtendLeaseAsync(tenant, e.TaskId, e.FencingToken, e.LeaseDuration, ct), false),
            StartCommand s => (await holders.StartAsync(tenant, s.TaskId, s.FencingToken, ct), false),
            _ => throw new ArgumentOutOfRangeException(nameof(command), command.GetType().Name, "not a holder command"),
        };
}

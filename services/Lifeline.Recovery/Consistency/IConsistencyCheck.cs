using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Consistency;

/// <summary>One problem a check found, before it is stored.</summary>
public sealed record FoundIssue(string Tenant, string Subject, string Description, bool Fixable, IReadOnlyDictionary<string, string> Details);

/// <summary>A stored issue handed to its check's fix.</summary>
public sealed record IssueToFix(Guid Id, string Tenant, string Subject, IReadOnlyDictionary<string, string> Details);

/// <summary>How a fix ended.</summary>
public enum FixStatus
{
    /// <summary>The fix was applied.</summary>
    Fixed,

    /// <summary>Dry run: the problem is still there and this is what the fix would do.</summary>
    WouldFix,

    /// <summary>Re-validation found the problem gone (fixed meanwhile by someone else); nothing was done.</summary>
    NoLongerPresent,

    /// <summary>The fix was refused or could not be applied.</summary>
    Failed,
}

/// <summary>The result of one fix, and what it says about it.</summary>
public sealed record FixOutcome(FixStatus Status, string Result);

/// <summary>
/// A consistency check across queue, registry and Redis. <see cref="FindAsync"/> only reads;
/// <see cref="FixAsync"/> re-validates the issue against the live system (its <see cref="IssueToFix.Details"/>
/// are the facts it was found with) before it changes anything, and changes nothing on a dry run.
/// A check that cannot reach a service throws (the runner records the error; the other checks still run).
/// </summary>
public interface IConsistencyCheck
{
    CheckDefinition Definition { get; }

    Task<IReadOnlyList<FoundIssue>> FindAsync(CancellationToken ct);

    Task<FixOutcome> FixAsync(IssueToFix issue, bool dryRun, CancellationToken ct);
}

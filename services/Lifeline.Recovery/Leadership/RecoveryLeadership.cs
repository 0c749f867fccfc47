namespace Lifeline.Recovery.Leadership;

/// <summary>
/// Recovery's one role: the instance elected for it (<see cref="ServiceDefaults.Leadership.LeaderElection"/>, per recovery
/// database, with <c>Recovery:LeaderLeaseDuration</c> as the term's TTL and <c>Recovery:InstanceId</c> as the holder) runs
/// the leader-only loops — worker-loss watches, scans, system-state snapshots — and fences their writes by its term.
/// </summary>
public static class RecoveryLeadership
{
    /// <summary>The role's name in <c>lifeline_leaders</c>; also the DI key of its election.</summary>
    public const string Role = "recovery";
}

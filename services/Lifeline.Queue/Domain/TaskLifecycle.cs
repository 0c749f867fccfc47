using static Lifeline.Queue.Domain.TaskState;

namespace Lifeline.Queue.Domain;

/// <summary>Who may make a transition. Each transition has exactly one.</summary>
public enum TransitionOwner
{
    /// <summary>A caller of the queue's API for a task of its tenant: EnqueueTask(s) (Enqueuing/), CancelTask (Administration/).</summary>
    Caller,

    /// <summary>The queue's leasing, for a worker's LeaseTasks or dispatch stream (Leasing/TaskLeaser).</summary>
    Leasing,

    /// <summary>The holder of the current lease, by its fencing token (Leasing/LeaseHolderOperations).</summary>
    LeaseHolder,

    /// <summary>The queue's dependency resolution, inside the transaction that ended a dependency (Dependencies/DependencyResolver).</summary>
    DependencyResolution,

    /// <summary>An operator: RedriveDeadLetters (Administration/).</summary>
    Operator,

    /// <summary>
    /// The queue's own rules — the visibility timeout and the attempt deadline — applied by its maintenance loop on every
    /// instance (Maintenance/QueueMaintenance), so no task depends on another service to make progress.
    /// </summary>
    QueueMaintenance,

    /// <summary>The recovery service, through RecoverTask (Recovery/TaskRecovery): a holder that is gone, a timed-out task's retry.</summary>
    Recovery,
}

/// <summary>
/// One kind of change of a task's state: from which states, to which, on what trigger, made by whom, and by which
/// SQL statements (named <c>Type.Member</c>; the lifecycle test finds each by reflection, reads the states its SQL
/// guards on and sets, and checks they are exactly these).
/// </summary>
public sealed record TaskTransition(string Name, string[] From, string[] To, TransitionOwner Owner, string Trigger, string[] Statements)
{
    /// <summary>The from→to pairs (from is null for the creation of a task).</summary>
    public IEnumerable<(string? From, string To)> Edges =>
        From.Length == 0 ? To.Select(t => ((string?)null, t)) : From.SelectMany(f => To.Select(t => ((string?)f, t)));

    /// <summary>The SQL guard on the current state: <c>t.status IN ('assigned','running')</c>.</summary>
    public string FromGuard(string column) => TaskLifecycle.FromGuard(column, this);

    /// <summary>The SQL guard on a computed new state: <c>i.status IN ('pending','failed','dead_lettered')</c>.</summary>
    public string ToGuard(string expression) => TaskLifecycle.ToGuard(expression, this);
}

/// <summary>
/// The task's life, written once: every change of <c>tasks.status</c> the queue makes, who owns it, and the statements
/// that make it. The SQL guards are built from this table (<see cref="TaskTransition.FromGuard"/>) and a test reads
/// every <c>UPDATE tasks … SET status</c> of the queue and checks it against the table, both ways; another reads the
/// CHECK constraints of a migrated database and checks them against <see cref="TaskState"/>.
/// <para>
/// Ownership decisions (each transition one owner):
/// an expired lease is the queue's (<see cref="LeaseExpiry"/>, the visibility timeout): recovery's scanner no longer
/// requeues a task only because its lease expired, it acts when the holder is gone (<see cref="RecoverLostHolder"/>);
/// the attempt deadline is the queue's (<see cref="TimeOut"/>): RecoverTask(TIMEOUT) runs the maintenance's own
/// statement for one task instead of a copy; what follows a timeout is recovery's (<see cref="RetryTimedOut"/>).
/// A timeout ends the task for its dependents when it happens (as <c>failed</c> does); a later retry by recovery,
/// like a redrive, does not revive dependents that were resolved then.
/// </para>
/// </summary>
public static class TaskLifecycle
{
    public static readonly TaskTransition Enqueue = new("enqueue", [], [Pending], TransitionOwner.Caller,
        "EnqueueTask, EnqueueTasks: a new task waits for its dependencies (unmet_dependencies) and not_before",
        ["TaskEnqueuer.InsertManySql", "TaskEnqueuer.InsertBatchSql"]);

    public static readonly TaskTransition Lease = new("lease", [Pending], [Assigned, Running], TransitionOwner.Leasing,
        "LeaseTasks and dispatch streams (start = true leases straight to running); the fencing token grows by one",
        ["TaskLeaser.LeaseChosenSql", "TaskLeaser.LockAndLeaseSql"]);

    public static readonly TaskTransition Start = new("start", [Assigned], [Running], TransitionOwner.LeaseHolder,
        "StartTask: the attempt's deadline (timeout_seconds) starts", ["LeaseHolderOperations.Start"]);

    public static readonly TaskTransition Complete = new("complete", Leased, [Completed], TransitionOwner.LeaseHolder,
        "CompleteTask, CompleteTasks", ["LeaseHolderOperations.Complete"]);

    public static readonly TaskTransition Fail = new("fail", Leased, [Pending, Failed, DeadLettered], TransitionOwner.LeaseHolder,
        "FailTask: retryable with retries left → pending after backoff; not retryable → failed; out of retries → dead_lettered",
        ["LeaseHolderOperations.FailManySql"]);

    public static readonly TaskTransition Release = new("release", Leased, [Pending], TransitionOwner.LeaseHolder,
        "ReleaseTask: back to pending without counting an attempt", ["LeaseHolderOperations.ReleaseSql"]);

    public static readonly TaskTransition Cancel = new("cancel", [Pending, Assigned, Running], [Cancelled], TransitionOwner.Caller,
        "CancelTask of a task that has not ended (a holder is told through the registry)", ["TaskAdministration.CancelSql"]);

    public static readonly TaskTransition DependencyViolated = new("dependency violated", [Pending], [Cancelled],
        TransitionOwner.DependencyResolution, "a dependency ended so that this task can never run (cascades to its own dependents)",
        ["DependencyResolver.ApplySql"]);

    public static readonly TaskTransition Redrive = new("redrive", [DeadLettered], [Pending], TransitionOwner.Operator,
        "RedriveDeadLetters: a fresh retry budget", ["TaskAdministration.RedriveSql"]);

    public static readonly TaskTransition TimeOut = new("time out", [Running], [TaskState.Timeout], TransitionOwner.QueueMaintenance,
        "the attempt passed its deadline: found by the maintenance pass, or named by RecoverTask(TIMEOUT) (recovery's " +
        "timeout_violations check), which runs the maintenance's statement for that one task; dependents resolve now",
        ["QueueMaintenance.TimeoutSql", "QueueMaintenance.TimeOutOneSql"]);

    public static readonly TaskTransition LeaseExpiry = new("lease expiry", Leased, [Pending, DeadLettered], TransitionOwner.QueueMaintenance,
        "the lease expired (visibility timeout): requeued counting the attempt, dead-lettered when out of retries; the only " +
        "path that acts on an expiry alone (recovery's scanner leaves expired leases of live holders to it)",
        ["QueueMaintenance.ExpirySql"]);

    public static readonly TaskTransition RecoverLostHolder = new("recover a lost holder", Leased, [Pending, DeadLettered], TransitionOwner.Recovery,
        "RecoverTask(REQUEUE/DEAD_LETTER) when the holder is gone — the registry lost it, or it is offline, deregistered or " +
        "unknown (recovery's WorkerLossWatcher, RecoveryScanner, orphaned_assignments); the queue's LivenessFence refuses " +
        "while the holder is alive with a current lease; resumes from the workflow's latest checkpoint",
        ["TaskRecovery.RecoverSql"]);

    public static readonly TaskTransition RetryTimedOut = new("retry a timed-out task", [TaskState.Timeout], [Pending, DeadLettered], TransitionOwner.Recovery,
        "RecoverTask on a timed-out task (recovery's scanner): the retry after a timeout is recovery's decision alone; " +
        "dependents resolved at the timeout stay resolved, as after a redrive", ["TaskRecovery.RecoverSql"]);

    /// <summary>The table.</summary>
    public static readonly IReadOnlyList<TaskTransition> All =
    [
        Enqueue, Lease, Start, Complete, Fail, Release, Cancel, DependencyViolated, Redrive, TimeOut, LeaseExpiry, RecoverLostHolder, RetryTimedOut,
    ];

    /// <summary>The guard on the current state of a statement that makes any of <paramref name="transitions"/>.</summary>
    public static string FromGuard(string column, params TaskTransition[] transitions) => Guard(column, transitions.SelectMany(t => t.From));

    /// <summary>The guard on the computed new state of a statement that makes any of <paramref name="transitions"/>.</summary>
    public static string ToGuard(string expression, params TaskTransition[] transitions) => Guard(expression, transitions.SelectMany(t => t.To));

    private static string Guard(string expression, IEnumerable<string> states)
    {
        var distinct = states.Distinct().ToArray();
        return distinct.Length == 1 ? $"{expression} = {Sql(distinct[0])}" : $"{expression} IN ({SqlList(distinct)})";
    }
}

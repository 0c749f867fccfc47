using Lifeline.Queue.V1;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Queue.Domain;

/// <summary>
/// The stored task states (the <c>tasks.status</c> column, guarded by a CHECK constraint) and their
/// mapping to the contract's <see cref="TaskStatus"/>. Which state may follow which, and who makes each
/// change, is <see cref="TaskLifecycle"/>. SQL names a state through <see cref="Sql"/>/<see cref="SqlList"/>,
/// never as a literal of its own.
/// </summary>
public static class TaskState
{
    public const string Pending = "pending";
    public const string Assigned = "assigned";
    public const string Running = "running";
    public const string Completed = "completed";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";
    public const string Timeout = "timeout";
    public const string DeadLettered = "dead_lettered";

    /// <summary>Every state, in the order of the CHECK constraint <c>ck_tasks_status</c>.</summary>
    public static readonly string[] All = [Pending, Assigned, Running, Completed, Failed, Cancelled, Timeout, DeadLettered];

    /// <summary>
    /// States after which the task does not run again and its dependents are resolved (<c>completed_at</c> is set) —
    /// unless recovery retries a <c>timeout</c> or an operator redrives a dead letter (see <see cref="TaskLifecycle"/>).
    /// </summary>
    public static readonly string[] Ended = [Completed, Failed, Cancelled, Timeout, DeadLettered];

    /// <summary>States that hold a lease: a holder, a fencing token and <c>lease_expires_at</c>.</summary>
    public static readonly string[] Leased = [Assigned, Running];

    /// <summary>States before an attempt started (<c>started_at</c> and <c>deadline_at</c> unset).</summary>
    public static readonly string[] NotStarted = [Pending, Assigned];

    /// <summary>A state as an SQL literal: <c>'pending'</c>.</summary>
    public static string Sql(string state) =>
        Array.IndexOf(All, state) >= 0 ? $"'{state}'" : throw new ArgumentOutOfRangeException(nameof(state), state, "not a task state");

    /// <summary>States as an SQL list for <c>IN (…)</c>: <c>'assigned','running'</c>.</summary>
    public static string SqlList(IEnumerable<string> states) => string.Join(",", states.Select(Sql));

    public static bool IsEnded(string state) => Array.IndexOf(Ended, state) >= 0;

    public static TaskStatus ToProto(string state) => state switch
    {
        Pending => TaskStatus.Pending,
        Assigned => TaskStatus.Assigned,
        Running => TaskStatus.Running,
        Completed => TaskStatus.Completed,
        Failed => TaskStatus.Failed,
        Cancelled => TaskStatus.Cancelled,
        Timeout => TaskStatus.Timeout,
        DeadLettered => TaskStatus.DeadLettered,
        _ => TaskStatus.Unspecified,
    };

    public static string FromProto(TaskStatus status) => status switch
    {
        TaskStatus.Pending => Pending,
        TaskStatus.Assigned => Assigned,
        TaskStatus.Running => Running,
        TaskStatus.Completed => Completed,
        TaskStatus.Failed => Failed,
        TaskStatus.Cancelled => Cancelled,
        TaskStatus.Timeout => Timeout,
        TaskStatus.DeadLettered => DeadLettered,
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "not a task state"),
    };
}

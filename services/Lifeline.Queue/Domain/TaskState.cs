using Lifeline.Queue.V1;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Queue.Domain;

/// <summary>
/// The stored task states (the <c>tasks.status</c> column, guarded by a CHECK constraint) and their
/// mapping to the contract's <see cref="TaskStatus"/>.
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

    /// <summary>States after which the task does not run again (unless a dead letter is redriven).</summary>
    public static readonly string[] Ended = [Completed, Failed, Cancelled, Timeout, DeadLettered];

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

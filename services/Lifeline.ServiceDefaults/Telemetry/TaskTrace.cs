using System.Diagnostics;

namespace Lifeline.ServiceDefaults.Telemetry;

/// <summary>
/// A task's enqueue context as W3C <c>traceparent</c> (stored with the task), and links to it from the spans of the
/// task's later steps (lease, start, progress, completion, recovery), so the task's life reads as one story even though
/// each step is its own trace.
/// </summary>
public static class TaskTrace
{
    /// <summary>Tag of a span or log scope: the task's id.</summary>
    public const string TaskIdTag = "lifeline.task.id";

    /// <summary>Tag of a metric, span or log scope: the task's type.</summary>
    public const string TaskTypeTag = "lifeline.task.type";

    /// <summary>Tag of a span or log scope: the tenant acted for.</summary>
    public const string TenantTag = "lifeline.tenant";

    /// <summary>Tag of a span or log scope: the worker's id.</summary>
    public const string WorkerIdTag = "lifeline.worker.id";

    /// <summary>
    /// The W3C traceparent of <paramref name="activity"/> to store with a task: null when there is none, it is not W3C,
    /// or it is not recorded (sampled out, or tracing is off: nothing would ever show the span a link points to, so the
    /// task stores nothing and the hot path formats no id).
    /// </summary>
    public static string? TraceParentOf(Activity? activity) =>
        activity is { IdFormat: ActivityIdFormat.W3C, Recorded: true } ? activity.Id : null;

    /// <summary>Adds a link to the context <paramref name="traceParent"/> names (nothing when it is null or malformed).</summary>
    public static void LinkTo(this Activity activity, string? traceParent)
    {
        if (traceParent is not null && ActivityContext.TryParse(traceParent, null, out var context))
        {
            activity.AddLink(new ActivityLink(context));
        }
    }
}

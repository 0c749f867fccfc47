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

    /// <summary>The W3C traceparent of <paramref name="activity"/> (null when there is none, or it is not W3C).</summary>
    public static string? TraceParentOf(Activity? activity) =>
        activity is { IdFormat: ActivityIdFormat.W3C } ? activity.Id : null;

    /// <summary>Adds a link to the context <paramref name="traceParent"/> names (nothing when it is null or malformed).</summary>
    public static void LinkTo(this Activity activity, string? traceParent)
    {
        if (traceParent is not null && ActivityContext.TryParse(traceParent, null, out var context))
        {
            activity.AddLink(new ActivityLink(context));
        }
    }
}

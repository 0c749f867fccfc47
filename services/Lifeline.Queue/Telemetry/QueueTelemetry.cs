using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lifeline.Queue.Data;
using Lifeline.ServiceDefaults.Telemetry;

namespace Lifeline.Queue.Telemetry;

/// <summary>
/// The queue's spans (ActivitySource <c>Lifeline.Queue</c>) and metrics (Meter <c>Lifeline.Queue</c>). Counters are
/// added after the transaction that made the change committed (group commit answers its callers only then), once per
/// task changed — a repeated call that changed nothing counts nothing. Metrics are tagged by task type only: the
/// number of types is the deployment's (bounded), tenants and task ids are not (never a tag).
/// </summary>
public sealed class QueueTelemetry
{
    public const string Name = "Lifeline.Queue";

    /// <summary>Spans of the task's life: enqueue, lease, start, progress, completion, failure, recovery.</summary>
    public static readonly ActivitySource Source = new(Name);

    public const string EnqueuedName = "lifeline.queue.tasks.enqueued";
    public const string LeasedName = "lifeline.queue.tasks.leased";
    public const string CompletedName = "lifeline.queue.tasks.completed";
    public const string FailedName = "lifeline.queue.tasks.failed";
    public const string DeadLetteredName = "lifeline.queue.tasks.dead_lettered";
    public const string RecoveredName = "lifeline.queue.tasks.recovered";
    public const string EnqueueToStartName = "lifeline.queue.task.enqueue_to_start.duration";
    public const string LeaseToCompleteName = "lifeline.queue.task.lease_to_complete.duration";
    public const string DepthName = "lifeline.queue.depth";
    public const string OldestReadyAgeName = "lifeline.queue.oldest_ready.age";

    /// <summary>Tag of <see cref="FailedName"/>: what the failed attempt led to (retry_scheduled, failed, dead_lettered, timeout, lease_expired).</summary>
    public const string FailureOutcomeTag = "lifeline.failure.outcome";

    /// <summary>Tag of <see cref="RecoveredName"/>: requeued or dead_lettered.</summary>
    public const string RecoveryOutcomeTag = "lifeline.recovery.outcome";

    // Seconds, from a few milliseconds to an hour: the latencies of a task queue.
    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

    private readonly Counter<long> _enqueued, _leased, _completed, _failed, _deadLettered, _recovered;
    private readonly Histogram<double> _enqueueToStart, _leaseToComplete;

    public QueueTelemetry(IMeterFactory meters, QueueDepthSnapshot depth)
    {
        var meter = meters.Create(Name);
        _enqueued = meter.CreateCounter<long>(EnqueuedName, "{task}", "Tasks created (an enqueue that found its idempotency key's task creates none).");
        _leased = meter.CreateCounter<long>(LeasedName, "{task}", "Tasks leased to a worker.");
        _completed = meter.CreateCounter<long>(CompletedName, "{task}", "Tasks completed by their lease holder.");
        _failed = meter.CreateCounter<long>(FailedName, "{task}", "Attempts that failed: reported failures, timeouts and expired leases, by what followed.");
        _deadLettered = meter.CreateCounter<long>(DeadLetteredName, "{task}", "Tasks moved to the dead-letter list.");
        _recovered = meter.CreateCounter<long>(RecoveredName, "{task}", "Tasks recovered (RecoverTask) after their worker was lost, by outcome.");
        _enqueueToStart = meter.CreateHistogram(EnqueueToStartName, "s", "From a task's enqueue to the start of an attempt.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _leaseToComplete = meter.CreateHistogram(LeaseToCompleteName, "s", "From a task's lease to its completion.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        meter.CreateObservableGauge(DepthName, depth.Depths, "{task}", "Ready tasks (pending, dependencies met, due) by type, as of the last sample.");
        meter.CreateObservableGauge(OldestReadyAgeName, depth.OldestAges, "s", "Age of the oldest ready task by type (since it became due), as of the last sample.");
    }

    private static KeyValuePair<string, object?> TypeTag(string type) => new(TaskTrace.TaskTypeTag, type);

    public void Enqueued(string type, int count = 1) => _enqueued.Add(count, TypeTag(type));

    /// <summary>A task leased (and, when the lease started it, its wait from enqueue).</summary>
    public void Leased(TaskRecord task)
    {
        _leased.Add(1, TypeTag(task.Type));
        Started(task);
    }

    public void Started(TaskRecord task)
    {
        if (task.StartedAt is { } started)
        {
            _enqueueToStart.Record(Math.Max(0, (started - task.CreatedAt).TotalSeconds), TypeTag(task.Type));
        }
    }

    public void Completed(TaskRecord task)
    {
        _completed.Add(1, TypeTag(task.Type));
        if (task is { CompletedAt: { } completed, AssignedAt: { } assigned })
        {
            _leaseToComplete.Record(Math.Max(0, (completed - assigned).TotalSeconds), TypeTag(task.Type));
        }
    }

    /// <summary>A failed attempt, by what followed (<see cref="FailureOutcomeTag"/>); a dead-lettering also counts as one.</summary>
    public void Failed(string type, string outcome)
    {
        _failed.Add(1, TypeTag(type), new KeyValuePair<string, object?>(FailureOutcomeTag, outcome));
        if (outcome == Domain.TaskState.DeadLettered)
        {
            _deadLettered.Add(1, TypeTag(type));
        }
    }

    public void Recovered(TaskRecord task)
    {
        _recovered.Add(1, TypeTag(task.Type), new KeyValuePair<string, object?>(RecoveryOutcomeTag, task.Status == Domain.TaskState.Pending ? "requeued" : "dead_lettered"));
        if (task.Status == Domain.TaskState.DeadLettered)
        {
            _deadLettered.Add(1, TypeTag(task.Type));
        }
    }

    // ---- spans ----

    /// <summary>A span of one holder's call on one task, or null when nobody listens (no cost then).</summary>
    public static Activity? StartTaskSpan(string name, string tenant, Guid taskId)
    {
        var activity = Source.StartActivity(name);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(TaskTrace.TenantTag, tenant);
            if (taskId != Guid.Empty)
            {
                activity.SetTag(TaskTrace.TaskIdTag, taskId.ToString());
            }
        }
        return activity;
    }

    /// <summary>
    /// Runs <paramref name="call"/> in a span of one task's step (started here, so the store's spans are its children),
    /// linked to the task's enqueue when it answers, marked failed when it throws.
    /// </summary>
    public static async Task<T> TraceAsync<TState, T>(string name, string tenant, Guid taskId, TState state, Func<TState, Task<T>> call,
        Func<T, TaskRecord> task)
    {
        using var activity = StartTaskSpan(name, tenant, taskId);
        try
        {
            var result = await call(state);
            if (activity is not null)
            {
                Answered(activity, task(result));
            }
            return result;
        }
        catch (Exception ex) when (activity is not null)
        {
            Refused(activity, ex);
            throw;
        }
    }

    /// <summary>Ends a task step's span with its answer: linked to the task's enqueue, tagged with its type and state.</summary>
    public static void Answered(Activity activity, TaskRecord record)
    {
        activity.SetTag(TaskTrace.TaskIdTag, record.Id.ToString());
        if (record.TraceParent != activity.Id)
        {
            activity.LinkTo(record.TraceParent);
        }
        activity.SetTag(TaskTrace.TaskTypeTag, record.Type);
        activity.SetTag("lifeline.task.status", record.Status);
    }

    /// <summary>Marks a task step's span failed (a refusal or an error).</summary>
    public static void Refused(Activity activity, Exception error)
    {
        activity.SetStatus(ActivityStatusCode.Error, error.GetType().Name);
        activity.SetTag("error.type", error.GetType().FullName);
    }

    /// <summary>Links a span covering many tasks (a lease, a batch of completions) to each task's enqueue.</summary>
    public static void LinkAll(Activity? activity, IEnumerable<TaskRecord> tasks)
    {
        if (activity is null)
        {
            return;
        }
        var count = 0;
        foreach (var task in tasks)
        {
            activity.LinkTo(task.TraceParent);
            count++;
        }
        activity.SetTag("lifeline.tasks", count);
    }
}

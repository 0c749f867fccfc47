using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Telemetry;

/// <summary>
/// Recovery's spans (ActivitySource <c>Lifeline.Recovery</c>: one per task recovered, the calls to the queue and the
/// checkpoint service its children) and metrics (Meter <c>Lifeline.Recovery</c>): task recoveries by result (the
/// success rate is recovered / (recovered + failed)) and trigger, and the time to recovery — from the moment the loss
/// was detected (the registry's <c>lost</c> event, or the scan that found the task) to the task requeued or
/// dead-lettered. Tags are bounded enums only.
/// </summary>
public sealed class RecoveryTelemetry
{
    public const string Name = "Lifeline.Recovery";
    public const string TasksName = "lifeline.recovery.tasks";
    public const string TimeToRecoveryName = "lifeline.recovery.time_to_recovery.duration";
    public const string ResultTag = "lifeline.recovery.result";
    public const string TriggerTag = "lifeline.recovery.trigger";

    public static readonly ActivitySource Source = new(Name);

    private static readonly double[] SecondsBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600];

    private readonly Counter<long> _tasks;
    private readonly Histogram<double> _timeToRecovery;

    public RecoveryTelemetry(IMeterFactory meters)
    {
        var meter = meters.Create(Name);
        _tasks = meter.CreateCounter<long>(TasksName, "{task}", "Tasks recovery acted on, by result (recovered, failed) and trigger.");
        _timeToRecovery = meter.CreateHistogram<double>(TimeToRecoveryName, "s",
            "From the detection of a loss (lost event, or the scan that found the task) to the task requeued or dead-lettered.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
    }

    public static string TriggerName(RecoveryTrigger trigger) => trigger switch
    {
        RecoveryTrigger.WorkerLost => "worker_lost",
        RecoveryTrigger.WorkerGone => "worker_gone",
        RecoveryTrigger.LeaseExpired => "lease_expired",
        RecoveryTrigger.NotStarted => "not_started",
        RecoveryTrigger.TimedOut => "timed_out",
        _ => "unspecified",
    };

    /// <summary>A task recovered now (its action recorded), whose loss was detected at <paramref name="detectedAt"/>.</summary>
    public void Recovered(RecoveryTrigger trigger, DateTime detectedAt, DateTime now)
    {
        var triggerTag = new KeyValuePair<string, object?>(TriggerTag, TriggerName(trigger));
        _tasks.Add(1, new KeyValuePair<string, object?>(ResultTag, "recovered"), triggerTag);
        _timeToRecovery.Record(Math.Max(0, (now - detectedAt).TotalSeconds), triggerTag);
    }

    /// <summary>An attempt to recover a task failed (recorded as a failed action; the next scan retries).</summary>
    public void Failed(RecoveryTrigger trigger) =>
        _tasks.Add(1, new KeyValuePair<string, object?>(ResultTag, "failed"), new KeyValuePair<string, object?>(TriggerTag, TriggerName(trigger)));
}

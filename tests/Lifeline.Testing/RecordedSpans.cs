using System.Collections.Concurrent;
using System.Diagnostics;
using Lifeline.ServiceDefaults.Telemetry;
using Xunit;

namespace Lifeline.Testing;

/// <summary>
/// The spans of the named activity sources that end while this lives, every one recorded with all its data. Every host of
/// the test process shares the sources: select a test's own spans by task id.
/// </summary>
public sealed class RecordedSpans : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Activity> _stopped = new();

    public RecordedSpans(params string[] sourceNames)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => sourceNames.Contains(source.Name),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>The ended spans named <paramref name="name"/>.</summary>
    public IEnumerable<Activity> All(string name) => _stopped.Where(a => a.OperationName == name);

    /// <summary>The ended spans named <paramref name="name"/> of task <paramref name="taskId"/>.</summary>
    public IEnumerable<Activity> OfTask(string name, string taskId) => All(name).Where(a => Equals(a.GetTagItem(TaskTrace.TaskIdTag), taskId));

    /// <summary>The one ended span named <paramref name="name"/> of task <paramref name="taskId"/>.</summary>
    public Activity Single(string name, string taskId) => Assert.Single(OfTask(name, taskId));

    public void Dispose() => _listener.Dispose();
}

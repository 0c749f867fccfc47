using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Lifeline.ServiceDefaults.Hosting;

/// <summary>
/// Meter <c>Lifeline.BackgroundWork</c>: passes and failed passes of every background loop, tagged with the loop's
/// name (<c>lifeline.loop</c>) and, for failures, the exception type (<c>error.type</c>).
/// </summary>
public static class BackgroundWorkMetrics
{
    public const string MeterName = "Lifeline.BackgroundWork";
    public const string PassesName = "lifeline.background.passes";
    public const string FailuresName = "lifeline.background.failures";
    public const string LoopTag = "lifeline.loop";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Passes = Meter.CreateCounter<long>(PassesName, "{pass}", "Background loop passes that completed.");
    private static readonly Counter<long> Failures = Meter.CreateCounter<long>(FailuresName, "{failure}", "Background loop passes that failed (the loop backs off and goes on).");

    internal static void Passed(string loop) => Passes.Add(1, new KeyValuePair<string, object?>(LoopTag, loop));

    internal static void Failed(string loop, Exception exception)
    {
        var tags = new TagList { { LoopTag, loop }, { "error.type", exception.GetType().FullName } };
        Failures.Add(1, tags);
    }
}

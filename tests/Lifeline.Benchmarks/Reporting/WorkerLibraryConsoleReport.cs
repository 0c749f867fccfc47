using System.Globalization;
using Lifeline.Benchmarks.Scenarios.WorkerLibrary;
using static Lifeline.Benchmarks.Reporting.ConsoleReport;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The worker-library section as a readable table.</summary>
internal static class WorkerLibraryConsoleReport
{
    public static void Write(WorkerLibrarySection report, TextWriter writer)
    {
        Section(writer, $"WORKER LIBRARY (.NET): {report.Workers} LifelineWorkers × {report.Slots} slots in this process, through the gateway (in this process)");
        writer.WriteLine($"Queue:    {report.Queue.Description}");
        writer.WriteLine($"Registry: {report.Registry.Description}");
        writer.WriteLine($"Load average at start of section: {report.LoadAverageAtStart}. Handler: returns {{}} at once. Library defaults: LeaseTasks with " +
                         "start=true, completions batched into CompleteTasks (5 ms / 100), HeartbeatStream. Tasks enqueued with EnqueueTasks (100 per call, " +
                         "straight to the queue). enqueue→complete: the queue's completed_at − created_at of each task.");
        var table = new TextTable("run", "tasks", "offered/s", "s", "tasks/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "retries", "check");
        foreach (var r in new[] { report.WarmUp, report.Burst, report.Paced })
        {
            table.Add(r == report.WarmUp ? "warm-up (burst)" : r.Mode, Int(r.Tasks), double.IsNaN(r.OfferedPerSecond) ? "all at once" : Rate(r.OfferedPerSecond),
                Seconds(r.Seconds), Rate(r.TasksPerSecond), Ms(Milliseconds(r.EnqueueToComplete?.P50Seconds)), Ms(Milliseconds(r.EnqueueToComplete?.P90Seconds)),
                Ms(Milliseconds(r.EnqueueToComplete?.P99Seconds)), Ms(Milliseconds(r.EnqueueToComplete?.MaxSeconds)), Int(r.Retries), r.Check);
        }

        table.WriteTo(writer);
        writer.WriteLine("burst: every task enqueued at once, the clock from the first enqueue to the last accepted completion (latency includes the backlog); " +
                         "paced: half the burst rate, so latency is the path's own.");
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Warnings/errors (workers, gateway, services): {report.WarningsAndErrors}"));
        foreach (var line in report.LogSample)
        {
            writer.WriteLine($"  {line}");
        }
    }

    private static double? Milliseconds(double? seconds) => seconds * 1000;
}

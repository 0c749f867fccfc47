using System.Globalization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Dispatch;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.Latency;
using Lifeline.Benchmarks.Scenarios.Processing;
using static Lifeline.Benchmarks.Reporting.ConsoleReport;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The queue section as readable tables: per pass, the rows' figures against their targets, then CPU per task and statistics.</summary>
internal static class QueueConsoleReport
{
    public static void Write(QueueSection report, TextWriter writer)
    {
        Section(writer, "QUEUE");
        if (report.Target is { } target)
        {
            writer.WriteLine($"Queue:         {target.Description}");
        }

        if (report.LibraryQueue is { } libraryQueue)
        {
            writer.WriteLine($"Library queue: {libraryQueue.Description}");
            writer.WriteLine($"Registry:      {report.LibraryRegistry?.Description}");
            writer.WriteLine("Gateway:       in this process (worker API key, rate limit off); the library rows' client CPU includes it");
        }

        writer.WriteLine($"Load average at start of section: {report.LoadAverageAtStart}; payload ~100 B JSON; no work in the handlers.");
        writer.WriteLine("Each warm row: its workers run an untimed warm-up, then a fixed window; tasks/s = tasks completed (or created) in the window ÷ " +
                         "its length; call latencies are of calls started in it. A processing row's backlog is enqueued before it and cut when the " +
                         "window ends. CPU per task = CPU time (/proc utime+stime) of this client, the service(s), PostgreSQL's whole process tree " +
                         "and Redis during the window ÷ its tasks.");
        if (report.DispatchUnavailable is { } unavailable)
        {
            writer.WriteLine($"Dispatch rows: NOT AVAILABLE — {unavailable}.");
        }

        foreach (var pass in report.Rows.Select(r => r.Pass).Distinct())
        {
            WritePass(writer, pass, report.Rows.Where(r => r.Pass == pass).ToList());
        }

        foreach (var backlog in report.PendingBacklogs)
        {
            writer.WriteLine();
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Pending backlog ({backlog.Queue}): {backlog.Tasks:N0} tasks of type '{backlog.TaskType}' (same tenant, a type no row leases) inserted with SQL in " +
                $"{backlog.InsertSeconds:0} s, VACUUM (ANALYZE) + CHECKPOINT {backlog.SettleSeconds:0} s; the queue counts {backlog.StoredPending:N0} pending " +
                $"({(backlog.Verified ? "ok" : "MISMATCH")})."));
        }

        if (report.PendingComparisons.Count > 0)
        {
            var tolerance = QueueTargets.PendingTolerance * 100;
            Section(writer, $"With the pending backlog against without (target: within {tolerance:0} %)");
            var table = new TextTable("row", "measure", "without", "with", "ratio", "within", "CPU µs/task without", "CPU µs/task with");
            foreach (var c in report.PendingComparisons)
            {
                table.Add(c.Id, c.Measure, Figure(c.Warm), Figure(c.Pending), c.Ratio.ToString("0.00", CultureInfo.InvariantCulture),
                    c.Within switch { true => "yes", false => "NO", null => "-" }, Rate(c.WarmCpu ?? double.NaN), Rate(c.PendingCpu ?? double.NaN));
            }

            table.WriteTo(writer);
        }

        WriteMemory(writer, "Queue service memory (/proc/PID/status after each row)", report.Memory);
        var failures = report.Rows.Where(r => r.Errors > 0 || !r.Verified).ToList();
        if (failures.Count > 0)
        {
            Section(writer, "Queue problems");
            foreach (var r in failures)
            {
                writer.WriteLine($"{r.Pass} {r.Id}: {r.Check}");
                foreach (var error in r.ErrorDetails)
                {
                    writer.WriteLine($"    {error}");
                }
            }
        }

        WriteServiceLog(writer, "Queue services and workers", report.ServiceWarningsAndErrors, report.ServiceLogSample);
    }

    private static void WritePass(TextWriter writer, string pass, IReadOnlyList<QueueRow> rows)
    {
        var title = pass switch
        {
            QueueBenchmark.ColdPass => "COLD: the first seconds of a brand-new database (no planner statistics yet) and service, no warm-up",
            QueueBenchmark.WarmPass => "WARM rows",
            _ => $"WARM rows with {pass} tasks in the table",
        };
        Section(writer, title);
        var throughput = rows.Where(r => r.StartLatency is null && r.Kind != StartLatencyScenario.Kind).ToList();
        if (throughput.Count > 0)
        {
            var table = new TextTable("row", "what", "tasks", "s", "tasks/s", "calls p50/p99 ms", "target", "check");
            foreach (var r in throughput)
            {
                table.Add(r.Id, r.Name, r.Available ? Int(r.Tasks) : "-", r.Available ? Seconds(r.Seconds) : "-", Rate(r.TasksPerSecond), Calls(r),
                    Targets(r), r.Check);
            }

            table.WriteTo(writer);
        }

        var latency = rows.Where(r => r.Kind == StartLatencyScenario.Kind).ToList();
        if (latency.Count > 0)
        {
            writer.WriteLine();
            writer.WriteLine("Enqueue → handler start (from just before the EnqueueTask call to the worker holding the task, same process clock):");
            var table = new TextTable("row", "what", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms", "enqueue call p50/p99 ms", "target", "check");
            foreach (var r in latency)
            {
                var s = r.StartLatency;
                table.Add(r.Id, r.Name, s is null ? "-" : Int(s.Count), Ms(s?.P50Ms), Ms(s?.P90Ms), Ms(s?.P99Ms), Ms(s?.MaxMs),
                    Pair(r.Calls.GetValueOrDefault(StartLatencyScenario.EnqueueCall)), Targets(r), r.Check);
            }

            table.WriteTo(writer);
        }

        writer.WriteLine();
        writer.WriteLine("CPU time per task in µs (client = this process; service = the queue, plus the registry in the library rows), " +
                         "the host's speed probed after the row (cpu / memory / system call against the run's first probe: below 1 the host ran slower), " +
                         "and the planner statistics of `tasks` when the row started:");
        var cpu = new TextTable("row", "total", "client", "service", "PostgreSQL", "Redis", "machine busy", "other cores", "host after", "statistics at start",
            "during the row");
        foreach (var r in rows.Where(r => r.Available))
        {
            var c = r.Cpu;
            cpu.Add(r.Id, Rate(c?.Total ?? double.NaN), Rate(c?.Client ?? double.NaN), Rate(c?.Services ?? double.NaN), Rate(c?.Postgres ?? double.NaN),
                Rate(c?.Redis ?? double.NaN), c is null ? "-" : $"{c.Use.MachineBusyPercent:0} %",
                c is null ? "-" : c.Use.OtherCores.ToString("0.00", CultureInfo.InvariantCulture), r.HostAfter?.ToString() ?? "-",
                r.StatisticsAtStart?.ToString() ?? "unknown",
                r.StatisticsDuring ?? "-");
        }

        cpu.WriteTo(writer);
        foreach (var r in rows.Where(r => r.Note is not null || r.Pass == QueueBenchmark.ColdPass))
        {
            writer.WriteLine($"  {r.Id}: {r.Note}");
            if (r.Pass == QueueBenchmark.ColdPass && r.PerSecond.Count > 0)
            {
                writer.WriteLine($"  {r.Id}: tasks in each second of the window: {string.Join(" ", r.PerSecond.Select(n => Int(n)))}");
            }
        }
    }

    private static string Calls(QueueRow r)
    {
        var parts = r.Calls
            .Where(c => c.Key != StartLatencyScenario.EnqueueCall || r.Kind == EnqueueScenario.Kind)
            .Select(c => $"{Short(c.Key)} {Pair(c.Value)}");
        var text = string.Join(", ", parts);
        return text.Length == 0 ? "-" : text;
    }

    private static string Short(string call) => call switch
    {
        QueueWorker.LeaseCall => "lease",
        QueueWorker.StartCall => "start",
        QueueWorker.CompleteCall or QueueWorker.CompleteBatchCall => "complete",
        TaskProducer.EnqueueCall or TaskProducer.EnqueueBatchCall => "enqueue",
        DispatchWorker.CompleteCall => "complete→ack",
        _ => call,
    };

    private static string Pair(LatencySummary? s) => s is null ? "-" : $"{Ms(s.P50Ms)}/{Ms(s.P99Ms)}";

    private static string Targets(QueueRow r) =>
        r.Targets.Count == 0 ? "(comparison)" : string.Join("; ", r.Targets.Select(t => $"{t.Goal}: {t.Verdict}"));

    private static string Figure(double value) =>
        value.ToString(value >= 100 ? "N0" : "0.0", CultureInfo.InvariantCulture);
}

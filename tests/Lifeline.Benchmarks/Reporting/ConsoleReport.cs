using System.Globalization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.Processing;
using Lifeline.Benchmarks.Scenarios.Registry;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The report as readable tables.</summary>
internal static class ConsoleReport
{
    private static void WriteBackup(BackupSection backup, TextWriter writer)
    {
        writer.WriteLine();
        writer.WriteLine($"Backup — {backup.Target.Description}");
        writer.WriteLine($"  database {backup.DatabaseBytes / 1048576.0:0.0} MiB ({backup.Rows:N0} rows); MB/s = database MiB per second of wall time");
        foreach (var t in backup.Timings)
        {
            writer.WriteLine($"  {t.Operation,-58} {t.Seconds,8:0.00} s {t.DatabaseMegabytesPerSecond,8:0.0} MiB/s   file {t.FileBytes / 1048576.0,8:0.0} MiB");
        }
        writer.WriteLine($"  backup ratio (service full backup MiB/s ÷ raw pg_dump MiB/s)      {backup.BackupRatio:0.00}");
        writer.WriteLine($"  restore ratio (service restore MiB/s ÷ raw pg_restore MiB/s)      {backup.RestoreRatio:0.00}");
        writer.WriteLine($"  incremental after {backup.ChangedRows:N0} updated rows (1 %): {backup.IncrementalBytes / 1024.0:0.0} KiB, {backup.IncrementalChanges:N0} changes; " +
                         $"{100 * backup.IncrementalToFull:0.00} % of the full backup ({backup.FullBytes / 1048576.0:0.0} MiB)");
        writer.WriteLine($"  restored content equals the source at the backup: {(backup.RestoredContentMatches ? "yes" : "NO")}; service warnings/errors: {backup.ServiceWarningsAndErrors}");
    }

    public static void Write(BenchmarkReport report, TextWriter writer)
    {
        writer.WriteLine();
        writer.WriteLine($"Machine:  {report.Machine}");
        writer.WriteLine($"Load:     {report.LoadAverageAtStart} at start, {report.LoadAverageAtEnd} at end (1/5/15 min, whole machine)");
        if (report.PostgresSettings.Count > 0)
        {
            writer.WriteLine($"Postgres: {string.Join(", ", report.PostgresSettings.Select(s => $"{s.Key}={s.Value}"))}");
        }

        writer.WriteLine($"Profile:  {report.Profile}; tenant {report.Tenant}; one shared gRPC channel (HTTP/2) per service");
        if (report.Queue is { } queue)
        {
            WriteQueue(queue, writer);
        }

        if (report.Registry is { } registry)
        {
            RegistryConsoleReport.Write(registry, writer);
        }

        if (report.Checkpoint is { } checkpoint)
        {
            CheckpointConsoleReport.Write(checkpoint, writer);
        }

        if (report.Recovery is { } recovery)
        {
            RecoveryConsoleReport.Write(recovery, writer);
        }

        if (report.Backup is { } backup)
        {
            WriteBackup(backup, writer);
        }

        if (report.WorkerLibrary is { } workerLibrary)
        {
            WorkerLibraryConsoleReport.Write(workerLibrary, writer);
        }

        writer.WriteLine();
        writer.WriteLine($"Run took {report.RunSeconds:0} s.");
        if (report.Queue is not null)
        {
            writer.WriteLine(report.Queue.Verified
                ? "Queue: every scenario accounted for every task exactly once (client ledger and the queue's stored counts agree)."
                : "Queue: SOME SCENARIOS DID NOT ACCOUNT FOR THEIR TASKS: see the check column and Problems above.");
        }

        if (report.Registry is not null)
        {
            writer.WriteLine(report.Registry.Verified
                ? "Registry: every registration and beat answered, exactly one lost event per stopped worker, no live worker reported lost."
                : "Registry: SOME CHECKS FAILED: see the check columns and Problems above.");
        }

        if (report.Checkpoint is not null)
        {
            writer.WriteLine(report.Checkpoint.Verified
                ? "Checkpoint: every checkpoint saved and read back with its checksum; both storage modes agree; every artifact verified."
                : "Checkpoint: SOME CHECKS FAILED: see the check columns and Problems above.");
        }

        if (report.WorkerLibrary is not null)
        {
            writer.WriteLine(report.WorkerLibrary.Verified
                ? "Worker library: every task completed exactly once through LifelineWorkers; nothing journaled, refused or lost."
                : "Worker library: SOME CHECKS FAILED: see the check column above.");
        }

        if (report.Recovery is not null)
        {
            writer.WriteLine(report.Recovery.Verified
                ? "Recovery: every task of a dead worker recovered and re-leased exactly once with a newer fencing token; the dead workers' " +
                  "late completions refused; every scan examined every in-flight task and took none from a live worker."
                : "Recovery: SOME CHECKS FAILED: see the check columns and Problems above.");
        }
    }

    private static void WriteQueue(QueueSection report, TextWriter writer)
    {
        Section(writer, $"QUEUE: {report.Target.Description}");
        writer.WriteLine($"Load average at start of section: {report.LoadAverageAtStart}; payload ~100 B JSON");

        Section(writer, "Enqueue");
        var enqueue = new TextTable("scenario", "tasks", "s", "tasks/s", "call p50 ms", "call p99 ms", "errors", "RSS MiB", "check");
        foreach (var r in report.Results.Where(r => r.Kind == "enqueue"))
        {
            var call = r.Latencies.GetValueOrDefault(TaskProducer.EnqueueCall) ?? r.Latencies.GetValueOrDefault(TaskProducer.EnqueueBatchCall);
            enqueue.Add(r.Name, Int(r.Tasks), Seconds(r.Seconds), Rate(r.TasksPerSecond), Ms(call?.P50Ms), Ms(call?.P99Ms),
                Int(r.Errors), Mib(r.Memory), r.Check);
        }

        enqueue.WriteTo(writer);

        Section(writer, "Processing of pre-enqueued tasks (W workers: LeaseTasks max B → StartTask each → CompleteTask(s))");
        var processing = new TextTable("W", "B", "tasks", "s", "tasks/s", "lease p50/p99 ms", "start p50/p99 ms", "complete p50/p99 ms",
            "errors", "RSS MiB", "check");
        foreach (var r in report.Results.Where(r => r.Kind == ProcessingScenario.Kind))
        {
            processing.Add(Int(r.Workers), Int(r.BatchSize), Int(r.Tasks), Seconds(r.Seconds), Rate(r.TasksPerSecond),
                Pair(r, QueueWorker.LeaseCall), Pair(r, QueueWorker.StartCall), Pair(r, Completion(r)), Int(r.Errors), Mib(r.Memory), r.Check);
        }

        processing.WriteTo(writer);

        var fused = report.Results.Where(r => r.Kind == ProcessingScenario.FusedKind).ToList();
        if (fused.Count > 0)
        {
            Section(writer, "Processing, LEASE+START FUSED (LeaseTasks max B with start=true → CompleteTask(s); no StartTask calls; " +
                            "not the spec'd lease → start → complete cycle above)");
            var table = new TextTable("W", "B", "tasks", "s", "tasks/s", "lease+start p50/p99 ms", "complete p50/p99 ms", "errors", "RSS MiB", "check");
            foreach (var r in fused)
            {
                table.Add(Int(r.Workers), Int(r.BatchSize), Int(r.Tasks), Seconds(r.Seconds), Rate(r.TasksPerSecond),
                    Pair(r, QueueWorker.LeaseCall), Pair(r, Completion(r)), Int(r.Errors), Mib(r.Memory), r.Check);
            }

            table.WriteTo(writer);
        }

        Section(writer, "Full cycle (producers enqueue while workers process)");
        var fullCycle = new TextTable("scenario", "tasks", "s", "tasks/s", "enqueue p50/p99 ms", "lease p50/p99 ms", "complete p50/p99 ms",
            "errors", "RSS MiB", "check");
        foreach (var r in report.Results.Where(r => r.Kind == "full-cycle"))
        {
            var enqueueCall = r.Latencies.ContainsKey(TaskProducer.EnqueueCall) ? TaskProducer.EnqueueCall : TaskProducer.EnqueueBatchCall;
            fullCycle.Add(r.Name, Int(r.Tasks), Seconds(r.Seconds), Rate(r.TasksPerSecond), Pair(r, enqueueCall),
                Pair(r, QueueWorker.LeaseCall), Pair(r, Completion(r)), Int(r.Errors), Mib(r.Memory), r.Check);
        }

        fullCycle.WriteTo(writer);

        if (report.Latency is { } latency)
        {
            Section(writer, $"Latency, processing {latency.Cell} (client-side, per call; LeaseTasks counted only when it returned a task)");
            var table = new TextTable("call", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms");
            foreach (var (name, summary) in new[] { (QueueWorker.LeaseCall, latency.LeaseTasks), (QueueWorker.CompleteCall, latency.CompleteTask) })
            {
                if (summary is not null)
                {
                    table.Add(name, Int(summary.Count), Ms(summary.P50Ms), Ms(summary.P90Ms), Ms(summary.P99Ms), Ms(summary.MaxMs));
                }
            }

            table.WriteTo(writer);
        }

        WriteMemory(writer, "Queue service memory (/proc/PID/status after each phase)", report.Memory);

        var failures = report.Results.Where(r => r.Errors > 0 || !r.Verified).ToList();
        if (failures.Count > 0)
        {
            Section(writer, "Queue problems");
            foreach (var r in failures)
            {
                writer.WriteLine($"{r.Kind} {r.Name}: {r.Check}");
                foreach (var error in r.ErrorDetails)
                {
                    writer.WriteLine($"    {error}");
                }
            }
        }

        WriteServiceLog(writer, "Queue service", report.ServiceWarningsAndErrors, report.ServiceLogSample);
    }

    public static void WriteMemory(TextWriter writer, string title, IReadOnlyList<MemoryPhase> phases)
    {
        if (phases.Count == 0)
        {
            return;
        }

        Section(writer, title);
        var memory = new TextTable("phase", "VmRSS MiB", "VmHWM MiB");
        foreach (var phase in phases)
        {
            memory.Add(phase.Phase, Mib(phase.Memory.RssMiB), Mib(phase.Memory.PeakRssMiB));
        }

        memory.WriteTo(writer);
    }

    public static void WriteServiceLog(TextWriter writer, string service, int count, IReadOnlyList<string> sample)
    {
        if (count > 0)
        {
            Section(writer, $"{service} logged {count} warnings/errors (first {Math.Min(20, sample.Count)})");
            foreach (var line in sample.Take(20))
            {
                writer.WriteLine($"    {line}");
            }
        }
    }

    private static string Completion(ScenarioResult r) => r.BatchSize == 1 ? QueueWorker.CompleteCall : QueueWorker.CompleteBatchCall;

    public static void Section(TextWriter writer, string title)
    {
        writer.WriteLine();
        writer.WriteLine($"== {title} ==");
    }

    private static string Pair(ScenarioResult r, string call) =>
        r.Latencies.GetValueOrDefault(call) is { } s ? $"{Ms(s.P50Ms)} / {Ms(s.P99Ms)}" : "-";

    public static string Int(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    public static string Rate(double value) => double.IsFinite(value) ? value.ToString("N0", CultureInfo.InvariantCulture) : "-";

    public static string Seconds(double value) => value.ToString("0.0", CultureInfo.InvariantCulture);

    public static string Ms(double? value) => value is { } v ? v.ToString(v < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) : "-";

    public static string Mib(ServiceMemory? memory) => memory is null ? "-" : Mib(memory.RssMiB);

    public static string Mib(double value) => value.ToString("0.0", CultureInfo.InvariantCulture);
}

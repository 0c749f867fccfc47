using System.Globalization;
using Lifeline.Benchmarks.Measurement;
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
            QueueConsoleReport.Write(queue, writer);
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

        writer.WriteLine();
        writer.WriteLine($"Run took {report.RunSeconds:0} s.");
        if (report.Queue is not null)
        {
            writer.WriteLine(report.Queue.Verified
                ? "Queue: every row accounted for every task exactly once (the workers' ledger and the queue's stored counts agree)."
                : "Queue: SOME ROWS DID NOT ACCOUNT FOR THEIR TASKS: see the check column and Problems above.");
            var missed = report.Queue.Rows.Where(r => r.Targets.Any(t => t.Met == false)).Select(r => $"{r.Pass} {r.Id}").ToList();
            writer.WriteLine(missed.Count == 0
                ? "Queue targets: every row that ran met its targets."
                : $"Queue targets NOT MET by: {string.Join(", ", missed)}.");
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

        if (report.Recovery is not null)
        {
            writer.WriteLine(report.Recovery.Verified
                ? "Recovery: every task of a dead worker recovered and re-leased exactly once with a newer fencing token; the dead workers' " +
                  "late completions refused; every scan examined every in-flight task and took none from a live worker."
                : "Recovery: SOME CHECKS FAILED: see the check columns and Problems above.");
        }
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

    public static void Section(TextWriter writer, string title)
    {
        writer.WriteLine();
        writer.WriteLine($"== {title} ==");
    }

    public static string Int(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    public static string Rate(double value) => double.IsFinite(value) ? value.ToString("N0", CultureInfo.InvariantCulture) : "-";

    public static string Seconds(double value) => value.ToString("0.0", CultureInfo.InvariantCulture);

    public static string Ms(double? value) => value is { } v ? v.ToString(v < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) : "-";

    public static string Mib(ServiceMemory? memory) => memory is null ? "-" : Mib(memory.RssMiB);

    public static string Mib(double value) => value.ToString("0.0", CultureInfo.InvariantCulture);
}

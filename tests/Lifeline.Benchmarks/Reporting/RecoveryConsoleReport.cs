using System.Globalization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Recovery;
using static Lifeline.Benchmarks.Reporting.ConsoleReport;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The recovery section as readable tables.</summary>
internal static class RecoveryConsoleReport
{
    public static void Write(RecoverySection report, TextWriter writer)
    {
        Section(writer, $"RECOVERY: {report.Target.Description}");
        writer.WriteLine($"Registry: {report.Registry.Description}");
        writer.WriteLine($"Queue:    {report.Queue.Description}");
        writer.WriteLine($"Scans on: {report.ScanTarget.Description}");
        writer.WriteLine($"Load average at start of section: {report.LoadAverageAtStart}.");

        var d = report.WorkerDeath;
        Section(writer, $"Recovery: time from worker death to re-lease (heartbeat every {d.HeartbeatIntervalSeconds:0.#} s, TTL {d.TtlSeconds:0.#} s; " +
                        $"recovery scan every {d.ScanIntervalSeconds:0.#} s, leader lease {d.LeaderLeaseSeconds:0.#} s; the dead workers' leases " +
                        $"{d.HolderLeaseSeconds:0} s, so none ran out)");
        writer.WriteLine("Workers each lease and start their tasks, then all stop beating at T0 (a simulated SIGKILL); a live rescuer long-polls " +
                         "LeaseTasks (start=true) and records when each task reaches it. Seconds.");
        var death = new TextTable("run", "dead workers", "tasks", "TTL s", "after T0 p50", "p90", "p99", "max", "after last beat p50 / max",
            "service time_to_recovery p50 / p99", "lost event / scan", "check");
        foreach (var r in new[] { report.WarmUp, d })
        {
            death.Add(r.Name == "warmup" ? "warm-up" : "timed", Int(r.DeadWorkers), Int(r.Tasks), S(r.TtlSeconds), S(r.SinceDeath?.P50Seconds),
                S(r.SinceDeath?.P90Seconds), S(r.SinceDeath?.P99Seconds), S(r.SinceDeath?.MaxSeconds),
                $"{S(r.SinceLastBeat?.P50Seconds)} / {S(r.SinceLastBeat?.MaxSeconds)}",
                $"{S(r.ServiceTimeToRecovery?.P50Seconds)} / {S(r.ServiceTimeToRecovery?.P99Seconds)}",
                $"{Int(r.ByLostWorker)} / {Int(r.ByScan)}", r.Check);
        }

        death.WriteTo(writer);
        writer.WriteLine($"(timed run, recovery actions by trigger: {string.Join(", ", d.ByTrigger.Select(t => $"{t.Key} {t.Value}"))}; " +
                         "worker_lost = the registry's lost event (fast path), the others = a periodic scan. " +
                         "time_to_recovery is the service's own recovered_at − detected_at, detected_at being the lost event or the scan's finding.)");

        var s = report.Scan;
        Section(writer, $"Recovery: RunRecoveryScan over {s.Tasks:N0} in-flight tasks (started, 1 h leases, held by {s.Holders} live workers " +
                        "beating every second: nothing recoverable)");
        writer.WriteLine($"Setup: enqueued in {s.EnqueueSeconds:0.0} s (EnqueueTasks of 1,000), leased and started in {s.LeaseSeconds:0.0} s " +
                         $"(LeaseTasks of up to {RecoveryProfile.MaxLeaseBatch}, start=true).");
        var scans = new TextTable("scan", "examined", "skipped alive", "actions", "scan s (service)", "call s (client)");
        for (var i = 0; i < s.Runs.Count; i++)
        {
            var run = s.Runs[i];
            scans.Add(Int(i + 1), Int(run.Examined), Int(run.SkippedAlive), Int(run.Actions), S(run.ServiceSeconds), S(run.CallSeconds));
        }

        scans.WriteTo(writer);
        writer.WriteLine($"min {S(s.MinSeconds)} s, median {S(s.MedianSeconds)} s: {Rate(s.TasksPerSecond)} tasks/s examined (at the median).  {s.Check}");
        if (s.RecoveryCpu is { } cpu)
        {
            writer.WriteLine($"CPU during the scans (cores): recovery {Cores(cpu.ServiceCores)}, queue {Cores(s.QueueCores)}, " +
                             $"PostgreSQL {Cores(cpu.PostgresCores)}, Redis {Cores(cpu.RedisCores)}, this client {Cores(cpu.ClientCores)}, " +
                             $"other {Cores(cpu.OtherCores)}; machine busy {cpu.MachineBusyPercent:0} % of {cpu.MachineCores} cores.");
        }

        WriteMemory(writer, "Recovery service memory (/proc/PID/status after each phase)", report.Memory);

        var failures = new[] { report.WarmUp, d }.Where(r => !r.Verified || r.Errors > 0).Select(r => (r.Name, r.Check, r.ErrorDetails))
            .Concat(s.Verified && s.Errors == 0 ? [] : [("scan", s.Check, s.ErrorDetails)])
            .ToList();
        if (failures.Count > 0)
        {
            Section(writer, "Recovery problems");
            foreach (var (name, check, details) in failures)
            {
                writer.WriteLine($"{name}: {check}");
                foreach (var error in details)
                {
                    writer.WriteLine($"    {error}");
                }
            }
        }

        WriteServiceLog(writer, "Registry, queue and recovery services", report.ServiceWarningsAndErrors, report.ServiceLogSample);
    }

    private static string S(double? seconds) =>
        seconds is { } v && double.IsFinite(v) ? v.ToString(v < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) : "-";

    private static string Cores(double? cores) => cores is { } c ? c.ToString("0.00", CultureInfo.InvariantCulture) : "-";
}

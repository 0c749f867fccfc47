using System.Globalization;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Registry;
using static Lifeline.Benchmarks.Reporting.ConsoleReport;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The registry section as readable tables.</summary>
internal static class RegistryConsoleReport
{
    public static void Write(RegistrySection report, TextWriter writer)
    {
        Section(writer, $"REGISTRY: {report.Target.Description}");
        writer.WriteLine($"Load average at start of section: {report.LoadAverageAtStart}. Between and around the windows, registered workers " +
                         $"keep beating at the registry's interval ({report.KeepAliveBeats:N0} keep-alive beats, {report.KeepAliveErrors} failed).");

        var r = report.Registration;
        Section(writer, "Registry: registration (parallel RegisterWorker; each a durable transaction: worker + event + breaker, then Redis)");
        var registration = new TextTable("workers", "callers", "s", "registrations/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "RSS MiB", "check");
        registration.Add(Int(r.Workers), Int(r.Callers), Seconds(r.Seconds), Rate(r.RegistrationsPerSecond), Ms(r.Latency?.P50Ms),
            Ms(r.Latency?.P90Ms), Ms(r.Latency?.P99Ms), Ms(r.Latency?.MaxMs), Int(r.Errors), Mib(r.Memory), r.Check);
        registration.WriteTo(writer);
        if (r.KeepAliveBeatsMeanwhile > 0)
        {
            writer.WriteLine($"(meanwhile the workers registered first sent {r.KeepAliveBeatsMeanwhile:N0} keep-alive beats)");
        }

        var leadIn = report.Heartbeats.Select(h => h.LeadInSeconds).DefaultIfEmpty(0).Max();
        Section(writer, $"Registry: heartbeats (every worker once per second, 100 ticks/s, after a {leadIn:0} s untimed lead-in at the same rate; " +
                        "latency from send to answer/ack)");
        var beats = new TextTable("mode", "workers", "s", "offered/s", "sent/s", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "tick lag p99/max ms", "in flight max", "errors", "sustained", "check");
        foreach (var h in report.Heartbeats)
        {
            beats.Add(h.Mode, Int(h.Workers), Seconds(h.WindowSeconds), Rate(h.OfferedPerSecond), Rate(h.SentPerSecond), Rate(h.AchievedPerSecond),
                Ms(h.Latency?.P50Ms), Ms(h.Latency?.P90Ms), Ms(h.Latency?.P99Ms), Ms(h.Latency?.MaxMs),
                h.ScheduleLag is { } lag ? $"{Ms(lag.P99Ms)} / {Ms(lag.MaxMs)}" : "-",
                Int(h.InFlightPerSecond.DefaultIfEmpty(0).Max()), Int(h.Errors), Sustained(h), h.Check);
        }

        beats.WriteTo(writer);
        foreach (var h in report.Heartbeats.Where(h => h.StreamsOpenSeconds is not null))
        {
            writer.WriteLine($"({h.Mode}: {h.StreamsOpened:N0} streams opened in {h.StreamsOpenSeconds:0.0} s, first beat acked, before the window)");
        }

        foreach (var h in report.Heartbeats)
        {
            writer.WriteLine($"({h.Mode}: beats in flight, once a second: {string.Join(' ', h.InFlightPerSecond.Select(n => n.ToString(CultureInfo.InvariantCulture)))})");
        }

        Section(writer, "Registry: PostgreSQL writes and memory of the heartbeat windows (writes: lead-in, window and one 5 s flush interval; memory: at the window's end)");
        var cost = new TextTable("mode", "beats", "workers-updating xacts", "rows updated", "largest xact rows", "rows/beat", "WAL MiB", "WAL B/beat",
            "VmRSS MiB", "VmHWM MiB");
        foreach (var h in report.Heartbeats)
        {
            var pg = h.Postgres;
            cost.Add(h.Mode, Int(h.Answered),
                pg is null ? "-" : Int(pg.UpdateTransactions),
                pg is null ? "-" : Int(pg.RowsUpdated),
                pg is null ? "-" : Int(pg.LargestTransactionRows),
                pg is null || h.Answered == 0 ? "-" : (pg.RowsUpdated / (double)h.Answered).ToString("0.000", CultureInfo.InvariantCulture),
                pg is null ? "-" : Mib(pg.WalBytes / 1048576.0),
                pg is null || h.Answered == 0 ? "-" : Rate(pg.WalBytes / (double)h.Answered),
                h.Memory is null ? "-" : Mib(h.Memory.RssMiB), h.Memory is null ? "-" : Mib(h.Memory.PeakRssMiB));
        }

        cost.WriteTo(writer);
        writer.WriteLine("(xacts: transactions that updated this run's workers rows, seen by polling xmin; each coalesced heartbeat flush is one " +
                         "statement writing every worker seen since the previous flush. WAL: the whole cluster.)");

        Section(writer, "Registry: CPU in cores (CPU-s per s) and µs per operation; client = this benchmark process; other = rest of the machine's busy time");
        var cpuTable = new TextTable("phase", "ops", "s", "machine busy %", "registry cores", "registry µs/op", "client cores", "client µs/op",
            "Redis cores", "Redis µs/op", "PostgreSQL cores", "other cores");
        foreach (var (phase, operations, cpu) in new[] { ("registration", (long)r.Workers, r.Cpu) }
                     .Concat(report.Heartbeats.Select(h => (h.Mode, h.Answered, h.Cpu))))
        {
            cpuTable.Add(phase, Int(operations), Seconds(cpu.Seconds), Percent(cpu.MachineBusyPercent),
                Cores(cpu.ServiceCores), Rate(cpu.MicrosecondsPer(cpu.ServiceCores, operations) ?? double.NaN),
                Cores(cpu.ClientCores), Rate(cpu.MicrosecondsPer(cpu.ClientCores, operations) ?? double.NaN),
                Cores(cpu.RedisCores), Rate(cpu.MicrosecondsPer(cpu.RedisCores, operations) ?? double.NaN),
                Cores(cpu.PostgresCores), Cores(cpu.OtherCores));
        }

        cpuTable.WriteTo(writer);
        writer.WriteLine("(µs/op: CPU time per registration or answered beat, the registration row including the keep-alive beats sent meanwhile; " +
                         "10,000 beats/s need 10,000 × µs/op ÷ 10⁶ cores of each)");

        var d = report.Detection;
        Section(writer, $"Registry: detection of {d.Workers} workers that stop together (heartbeat interval {d.HeartbeatIntervalSeconds:0.#} s, " +
                        $"TTL {d.TtlSeconds:0.#} s; WatchWorkers filter registered+lost)");
        var detection = new TextTable("delay", "samples", "min s", "p50 s", "p90 s", "p99 s", "max s");
        foreach (var (name, distribution) in new[]
                 {
                     ("lost received − last beat sent", d.SinceLastBeat),
                     ($"lost received − (last beat + TTL {d.TtlSeconds:0.#} s)", d.AfterLapse),
                     ("lost received − occurred_at (delivery)", d.Delivery),
                 })
        {
            detection.Add(name, Int(distribution?.Count ?? 0), Sec(distribution?.MinSeconds), Sec(distribution?.P50Seconds),
                Sec(distribution?.P90Seconds), Sec(distribution?.P99Seconds), Sec(distribution?.MaxSeconds));
        }

        detection.WriteTo(writer);
        writer.WriteLine($"Lost events: {d.LostEvents} for {d.WorkersLost}/{d.Workers} workers; duplicates {d.Duplicates}; missed {d.Missing}; " +
                         $"other workers lost {d.OtherWorkersLost}; fleet workers lost during the whole section {report.FleetWorkersLost}. {d.Check}");

        WriteMemory(writer, "Registry service memory (/proc/PID/status)", report.Memory);

        var problems = new List<(string What, string Check, IReadOnlyList<string> Details)>();
        if (r.Errors > 0 || !r.Verified)
        {
            problems.Add(("registration", r.Check, r.ErrorDetails));
        }

        problems.AddRange(report.Heartbeats.Where(h => h.Errors > 0 || !h.Verified).Select(h => (h.Mode, h.Check, h.ErrorDetails)));
        if (d.Errors > 0 || !d.Verified)
        {
            problems.Add(("detection", d.Check, d.ErrorDetails));
        }

        if (report.KeepAliveErrors > 0)
        {
            problems.Add(("keep-alive", $"{report.KeepAliveErrors} failed keep-alive beats", report.KeepAliveErrorDetails));
        }

        if (report.FleetWorkersLost > 0)
        {
            problems.Add(("fleet", $"{report.FleetWorkersLost} lost events of workers that never stopped beating", []));
        }

        if (problems.Count > 0)
        {
            Section(writer, "Registry problems");
            foreach (var (what, check, details) in problems)
            {
                writer.WriteLine($"{what}: {check}");
                foreach (var error in details)
                {
                    writer.WriteLine($"    {error}");
                }
            }
        }

        WriteServiceLog(writer, "Registry service", report.ServiceWarningsAndErrors, report.ServiceLogSample);
    }

    private static string Sustained(HeartbeatResult h)
    {
        if (h.Sustained)
        {
            return "yes";
        }

        var reasons = new List<string>();
        if (h.AchievedPerSecond < 0.99 * h.OfferedPerSecond)
        {
            reasons.Add($"{h.AchievedPerSecond / h.OfferedPerSecond:P0} of offered");
        }

        if (h.BacklogGrew)
        {
            reasons.Add("backlog grew");
        }

        if (h.Errors > 0)
        {
            reasons.Add("errors");
        }

        return reasons.Count == 0 ? "NO" : $"NO: {string.Join(", ", reasons)}";
    }

    private static string Cores(double? value) => value is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "-";

    private static string Percent(double value) => value.ToString("0", CultureInfo.InvariantCulture);

    private static string Sec(double? value) => value is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "-";
}

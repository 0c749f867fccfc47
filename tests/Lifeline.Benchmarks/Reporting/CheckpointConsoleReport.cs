using System.Globalization;
using static Lifeline.Benchmarks.Reporting.ConsoleReport;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>The checkpoint section as readable tables.</summary>
internal static class CheckpointConsoleReport
{
    public static void Write(CheckpointSection report, TextWriter writer)
    {
        Section(writer, $"CHECKPOINT: {report.Target.Description}");
        writer.WriteLine($"Load average at start of section: {report.LoadAverageAtStart}. One caller; each checkpoint changes 1% of the previous " +
                         "state (random text values, 240 characters each); every GetCheckpoint reconstructs the state and verifies its checksum.");

        Section(writer, "Checkpoint: CreateCheckpoint and GetCheckpoint latency by state size (client-side, per call)");
        var latency = new TextTable("state", "canonical KiB", "checkpoints", "create p50 ms", "create p90 ms", "create p99 ms", "create max ms",
            "get p50 ms", "get p90 ms", "get p99 ms", "get max ms", "deltas / full", "stored/state", "errors", "RSS MiB", "check");
        foreach (var r in report.Latency)
        {
            latency.Add(r.Label, Kib(r.CanonicalBytes), Int(r.Checkpoints), Ms(r.Create?.P50Ms), Ms(r.Create?.P90Ms), Ms(r.Create?.P99Ms), Ms(r.Create?.MaxMs),
                Ms(r.Get?.P50Ms), Ms(r.Get?.P90Ms), Ms(r.Get?.P99Ms), Ms(r.Get?.MaxMs), $"{Int(r.Deltas)} / {Int(r.FullSnapshots)}",
                Percent(r.StateBytesTotal == 0 ? double.NaN : r.StoredBytes / (double)r.StateBytesTotal), Int(r.Errors),
                r.Memory is null ? "-" : Mib(r.Memory.RssMiB), r.Check);
        }

        latency.WriteTo(writer);

        var s = report.Storage;
        Section(writer, $"Checkpoint: bytes stored for {s.Checkpoints} successive checkpoints, each changing 1% of a {s.StateBytes / 1024} KiB state " +
                        "(the same states saved to a second instance with MaxDeltaChain=0)");
        var storage = new TextTable("storage", "checkpoints", "state MiB", "stored MiB", "stored/state", "deltas / full", "max chain", "check");
        storage.Add("deltas (default)", Int(s.Checkpoints), Mib(s.StateBytesTotal / 1048576.0), Mib(s.DeltaStoredBytes / 1048576.0),
            Percent(s.StateBytesTotal == 0 ? double.NaN : s.DeltaStoredBytes / (double)s.StateBytesTotal), $"{Int(s.Deltas)} / {Int(s.DeltaFullSnapshots)}",
            Int(s.MaxChainDepth), s.Check);
        storage.Add("full snapshots", Int(s.Checkpoints), Mib(s.StateBytesTotal / 1048576.0), Mib(s.FullStoredBytes / 1048576.0),
            Percent(s.StateBytesTotal == 0 ? double.NaN : s.FullStoredBytes / (double)s.StateBytesTotal), $"0 / {Int(s.Checkpoints)}", "0", "");
        storage.WriteTo(writer);
        writer.WriteLine($"Deltas take {Percent(s.Ratio)} of the full snapshots' bytes (aim: at most {Percent(CheckpointProfile.TargetDeltaRatio)}): " +
                         (s.MeetsTarget ? "met." : "NOT MET."));

        var a = report.Artifacts;
        Section(writer, $"Checkpoint: artifacts, {a.Bytes / 1048576} MiB of new random bytes in {a.ChunkBytes / 1024} KiB chunks, {a.Repetitions}× " +
                        "(MB/s = 10^6 bytes/s; upload until the reply, download until the last chunk, client verifies SHA-256)");
        var artifacts = new TextTable("direction", "runs", "MB/s median", "MB/s each", "errors", "check");
        artifacts.Add("upload (PutArtifact)", Int(a.UploadMBps.Count), Rate(a.UploadMedianMBps), Each(a.UploadMBps), Int(a.Errors), a.Check);
        artifacts.Add("download (GetArtifact)", Int(a.DownloadMBps.Count), Rate(a.DownloadMedianMBps), Each(a.DownloadMBps), "", "");
        artifacts.WriteTo(writer);

        WriteMemory(writer, "Checkpoint service memory (/proc/PID/status after each phase)", report.Memory);

        var failures = report.Latency.Where(l => !l.Verified).Select(l => (l.Label, l.ErrorDetails))
            .Concat(report.Storage.Verified ? [] : [("storage", report.Storage.ErrorDetails)])
            .Concat(report.Artifacts.Verified ? [] : [("artifacts", report.Artifacts.ErrorDetails)])
            .ToList();
        if (failures.Count > 0)
        {
            Section(writer, "Checkpoint problems");
            foreach (var (name, details) in failures)
            {
                writer.WriteLine(name);
                foreach (var error in details)
                {
                    writer.WriteLine($"    {error}");
                }
            }
        }

        WriteServiceLog(writer, "Checkpoint service", report.ServiceWarningsAndErrors, report.ServiceLogSample);
    }

    private static string Kib(long bytes) => (bytes / 1024.0).ToString(bytes < 10 * 1024 ? "0.0" : "0", CultureInfo.InvariantCulture);

    private static string Percent(double ratio) =>
        double.IsFinite(ratio) ? (ratio * 100).ToString(ratio < 0.1 ? "0.00" : "0.0", CultureInfo.InvariantCulture) + " %" : "-";

    private static string Each(IReadOnlyList<double> values) =>
        values.Count == 0 ? "-" : string.Join(" ", values.Select(v => v.ToString("0", CultureInfo.InvariantCulture)));
}

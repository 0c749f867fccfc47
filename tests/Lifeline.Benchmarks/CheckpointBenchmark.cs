using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios.Checkpoint;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Benchmarks;

/// <summary>
/// The checkpoint section of a run: start the checkpoint service on the durable cluster, warm up, time
/// CreateCheckpoint/GetCheckpoint per state size, compare the bytes stored with deltas against a second
/// instance storing full snapshots, and time artifact uploads and downloads.
/// </summary>
internal static class CheckpointBenchmark
{
    public static async Task<CheckpointSection> RunAsync(CheckpointProfile profile, LocalInfrastructure infrastructure, string tenant, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Checkpoint (load average {load})");
        await using var target = await ServiceTarget.StartLocalAsync(ServiceDefinition.Checkpoint, infrastructure, ct);
        Console.WriteLine($"Target: {target.Description}");
        using var connection = CheckpointConnection.Open(target.Url, tenant);
        var memory = new List<MemoryPhase>();
        void RecordMemory(string phase, ServiceMemory? reading)
        {
            if (reading is not null)
            {
                memory.Add(new MemoryPhase(phase, reading));
            }
        }

        await EnsureReachableAsync(connection, target, ct);
        RecordMemory("idle after start", target.ReadMemory());
        try
        {
            await CheckpointScenarios.WarmUpAsync(connection, profile.WarmUpCheckpoints, ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The checkpoint warm-up failed, so the checkpoint service is not working: {ex.StatusCode} {ex.Status.Detail}", ex);
        }

        Console.WriteLine($"  warm-up    {profile.WarmUpCheckpoints} checkpoints each of 4 KiB and 256 KiB states saved and read back");
        RecordMemory("after warm-up", target.ReadMemory());

        var latency = new List<CheckpointLatencyResult>();
        foreach (var cell in profile.Latency)
        {
            var result = await CheckpointScenarios.LatencyAsync(connection, target, cell, ct);
            target.EnsureServiceRunning();
            latency.Add(result);
            RecordMemory($"after {cell.Label} states", result.Memory);
            Console.WriteLine($"  checkpoint {$"{cell.Label} state × {cell.Checkpoints}",-40} create p50 {result.Create?.P50Ms ?? double.NaN,8:0.00} ms, " +
                              $"get p50 {result.Get?.P50Ms ?? double.NaN,8:0.00} ms  {result.Check}");
        }

        CheckpointStorageResult storage;
        var fullTarget = await ServiceTarget.StartLocalAsync(ServiceDefinition.CheckpointFullSnapshots, infrastructure, ct);
        await using (fullTarget)
        {
            using var fullConnection = CheckpointConnection.Open(fullTarget.Url, tenant);
            await EnsureReachableAsync(fullConnection, fullTarget, ct);
            storage = await CheckpointScenarios.StorageAsync(connection, fullConnection, profile, ct);
            target.EnsureServiceRunning();
            fullTarget.EnsureServiceRunning();
        }

        Console.WriteLine($"  checkpoint {$"storage, {storage.Checkpoints} × 1% of {storage.StateBytes / 1024} KiB",-40} " +
                          $"deltas {storage.DeltaStoredBytes / 1048576.0:0.00} MiB vs full {storage.FullStoredBytes / 1048576.0:0.00} MiB = {storage.Ratio:P1}  {storage.Check}");

        var artifacts = await CheckpointScenarios.ArtifactsAsync(connection, target, profile, ct);
        target.EnsureServiceRunning();
        RecordMemory("after artifacts", artifacts.Memory);
        Console.WriteLine($"  artifact   {$"{artifacts.Bytes / 1048576} MiB × {artifacts.Repetitions}",-40} " +
                          $"upload {artifacts.UploadMedianMBps:0} MB/s, download {artifacts.DownloadMedianMBps:0} MB/s  {artifacts.Check}");

        return new CheckpointSection(
            new TargetInfo(target.Url.ToString(), target.Description), new TargetInfo(fullTarget.Url.ToString(), fullTarget.Description), load,
            latency, storage, artifacts, memory, target.Output?.ProblemCount ?? 0, target.Output?.Problems() ?? []);
    }

    /// <summary>Fails fast, with the reason, when the service does not answer (an unknown workflow must be NOT_FOUND).</summary>
    private static async Task EnsureReachableAsync(CheckpointConnection connection, ServiceTarget target, CancellationToken ct)
    {
        try
        {
            await connection.Checkpoints.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = "reachability-probe" }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
        {
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The checkpoint service at {target.Url} does not answer GetWorkflow: {ex.StatusCode} {ex.Status.Detail}", ex);
        }
    }
}

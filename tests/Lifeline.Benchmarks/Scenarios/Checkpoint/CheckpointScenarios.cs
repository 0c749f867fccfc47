using System.Diagnostics;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Benchmarks.Scenarios.Checkpoint;

/// <summary>The checkpoint scenarios. One caller at a time: they measure the cost of a call, not throughput under contention.</summary>
internal static class CheckpointScenarios
{
    public const string CreateCall = "CreateCheckpoint";
    public const string GetCall = "GetCheckpoint";

    /// <summary>Saves checkpoints without timing them: JIT, connection and database pools warm up.</summary>
    public static async Task WarmUpAsync(CheckpointConnection connection, int checkpoints, CancellationToken ct)
    {
        foreach (var size in new[] { 4 * 1024, 256 * 1024 })
        {
            var workload = new CheckpointWorkload(size, seed: size);
            var workflow = $"warm-up-{size}";
            var ids = new List<string>();
            for (var i = 1; i <= checkpoints; i++)
            {
                var reply = await connection.Checkpoints.CreateCheckpointAsync(CheckpointWorkload.Request(workflow, workload.Next(), i), CheckpointConnection.Call(ct));
                ids.Add(reply.Metadata.Id);
            }

            foreach (var id in ids)
            {
                await connection.Checkpoints.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = id }, CheckpointConnection.Call(ct));
            }
        }
    }

    /// <summary>Successive CreateCheckpoint calls of one workflow, then a GetCheckpoint of each, in random order.</summary>
    public static async Task<CheckpointLatencyResult> LatencyAsync(
        CheckpointConnection connection, ServiceTarget target, CheckpointLatencyCase cell, CancellationToken ct)
    {
        var workload = new CheckpointWorkload(cell.StateBytes, seed: cell.StateBytes + 1);
        var workflow = $"latency-{cell.StateBytes}";
        var errors = new CallErrors();
        var create = new CallTimings();
        var get = new CallTimings();
        var created = new List<CheckpointMetadata>();
        for (var i = 1; i <= cell.Checkpoints; i++)
        {
            var request = CheckpointWorkload.Request(workflow, workload.Next(), i);
            var start = Stopwatch.GetTimestamp();
            try
            {
                var reply = await connection.Checkpoints.CreateCheckpointAsync(request, CheckpointConnection.Call(ct));
                create.Record(CreateCall, start);
                created.Add(reply.Metadata);
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record(CreateCall, ex);
            }
        }

        var mismatches = 0;
        foreach (var metadata in created.OrderBy(_ => Random.Shared.Next()))
        {
            var start = Stopwatch.GetTimestamp();
            try
            {
                var reply = await connection.Checkpoints.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = metadata.Id }, CheckpointConnection.Call(ct));
                get.Record(GetCall, start);
                if (reply.Checkpoint.Metadata.Checksum != metadata.Checksum || reply.Checkpoint.State is null)
                {
                    mismatches++;
                }
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record(GetCall, ex);
            }
        }

        var latencies = CallTimings.Summarize([create, get]);
        var deltas = created.Count(c => c.StorageKind == StorageKind.Delta);
        var verified = created.Count == cell.Checkpoints && mismatches == 0 && errors.Count == 0;
        var check = verified
            ? $"{created.Count} saved and read back, checksums agree"
            : $"{created.Count}/{cell.Checkpoints} saved, {mismatches} checksum mismatches, {errors.Count} failed calls";
        return new CheckpointLatencyResult(
            cell.Label, cell.StateBytes, created.LastOrDefault()?.SizeBytes ?? 0, cell.Checkpoints,
            latencies.GetValueOrDefault(CreateCall), latencies.GetValueOrDefault(GetCall),
            deltas, created.Count - deltas, created.Sum(c => c.StoredBytes), created.Sum(c => c.SizeBytes),
            errors.Count, errors.Distinct, verified, check, target.ReadMemory());
    }

    /// <summary>
    /// The same successive states (each a 1% change of the last) saved to the default service and to one
    /// storing every checkpoint full; compares the stored bytes each reports for its workflow.
    /// </summary>
    public static async Task<CheckpointStorageResult> StorageAsync(
        CheckpointConnection deltas, CheckpointConnection fullSnapshots, CheckpointProfile profile, CancellationToken ct)
    {
        var workload = new CheckpointWorkload(profile.StorageStateBytes, seed: 42);
        const string workflow = "storage";
        var errors = new CallErrors();
        var withDeltas = new List<CheckpointMetadata>();
        var asFull = new List<CheckpointMetadata>();
        for (var i = 1; i <= profile.StorageCheckpoints; i++)
        {
            var request = CheckpointWorkload.Request(workflow, workload.Next(), i);
            try
            {
                withDeltas.Add((await deltas.Checkpoints.CreateCheckpointAsync(request, CheckpointConnection.Call(ct))).Metadata);
                asFull.Add((await fullSnapshots.Checkpoints.CreateCheckpointAsync(request, CheckpointConnection.Call(ct))).Metadata);
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record(CreateCall, ex);
            }
        }

        var deltaSummary = (await deltas.Checkpoints.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflow }, CheckpointConnection.Call(ct))).Workflow;
        var fullSummary = (await fullSnapshots.Checkpoints.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflow }, CheckpointConnection.Call(ct))).Workflow;

        // Same states, same canonical checksums; the summaries agree with the replies; the last one reads back from each.
        var sameChecksums = withDeltas.Count == asFull.Count && withDeltas.Zip(asFull).All(p => p.First.Checksum == p.Second.Checksum);
        var summariesAgree = deltaSummary.StoredBytes == withDeltas.Sum(c => c.StoredBytes) && fullSummary.StoredBytes == asFull.Sum(c => c.StoredBytes)
                             && deltaSummary.CheckpointCount == profile.StorageCheckpoints && fullSummary.CheckpointCount == profile.StorageCheckpoints;
        var lastReadsBack = false;
        if (withDeltas.Count > 0)
        {
            var last = await deltas.Checkpoints.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = withDeltas[^1].Id }, CheckpointConnection.Call(ct));
            lastReadsBack = last.Checkpoint.Metadata.Checksum == asFull[^1].Checksum;
        }

        var ratio = fullSummary.StoredBytes == 0 ? double.NaN : deltaSummary.StoredBytes / (double)fullSummary.StoredBytes;
        var verified = errors.Count == 0 && sameChecksums && summariesAgree && lastReadsBack && asFull.All(c => c.StorageKind == StorageKind.Full);
        var check = verified
            ? "same checksums on both; stored bytes agree with GetWorkflow; newest delta reads back"
            : $"{errors.Count} failed calls; checksums {(sameChecksums ? "agree" : "DIFFER")}; summaries {(summariesAgree ? "agree" : "DIFFER")}; " +
              $"read-back {(lastReadsBack ? "ok" : "FAILED")}";
        var deltaCount = withDeltas.Count(c => c.StorageKind == StorageKind.Delta);
        return new CheckpointStorageResult(
            profile.StorageCheckpoints, profile.StorageStateBytes, deltaSummary.StateBytes, deltaSummary.StoredBytes, deltaCount,
            withDeltas.Count - deltaCount, withDeltas.Select(c => c.ChainDepth).DefaultIfEmpty(0).Max(), fullSummary.StoredBytes, ratio,
            ratio <= CheckpointProfile.TargetDeltaRatio, errors.Count, errors.Distinct, verified, check);
    }

    /// <summary>Uploads new random bytes (never deduplicated) and downloads them again, verifying size and SHA-256.</summary>
    public static async Task<ArtifactTransferResult> ArtifactsAsync(
        CheckpointConnection connection, ServiceTarget target, CheckpointProfile profile, CancellationToken ct)
    {
        var errors = new CallErrors();
        var uploads = new List<double>();
        var downloads = new List<double>();
        var problems = 0;
        var bytes = new byte[profile.ArtifactBytes];
        for (var rep = 1; rep <= profile.ArtifactRepetitions; rep++)
        {
            new Random(1000 + rep).NextBytes(bytes);
            var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            var chunks = new List<ByteString>();
            for (var offset = 0; offset < bytes.Length; offset += profile.ArtifactChunkBytes)
            {
                chunks.Add(ByteString.CopyFrom(bytes, offset, Math.Min(profile.ArtifactChunkBytes, bytes.Length - offset)));
            }

            try
            {
                var start = Stopwatch.GetTimestamp();
                using (var call = connection.Checkpoints.PutArtifact(CheckpointConnection.Transfer(ct)))
                {
                    await call.RequestStream.WriteAsync(new PutArtifactRequest
                    {
                        Header = new ArtifactHeader { Name = $"bench-{rep}.bin", ContentType = "application/octet-stream", ExpectedSha256 = sha },
                    }, ct);
                    foreach (var chunk in chunks)
                    {
                        await call.RequestStream.WriteAsync(new PutArtifactRequest { Chunk = chunk }, ct);
                    }

                    await call.RequestStream.CompleteAsync();
                    var reply = await call.ResponseAsync;
                    var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                    uploads.Add(bytes.Length / 1e6 / seconds);
                    if (reply.Artifact.Sha256 != sha || reply.Artifact.Size != bytes.Length || reply.Deduplicated)
                    {
                        problems++;
                    }
                }

                start = Stopwatch.GetTimestamp();
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                long received = 0;
                using (var download = connection.Checkpoints.GetArtifact(new GetArtifactRequest { Sha256 = sha }, CheckpointConnection.Transfer(ct)))
                {
                    while (await download.ResponseStream.MoveNext(ct))
                    {
                        if (download.ResponseStream.Current.PartCase == GetArtifactResponse.PartOneofCase.Chunk)
                        {
                            var chunk = download.ResponseStream.Current.Chunk.Span;
                            hash.AppendData(chunk);
                            received += chunk.Length;
                        }
                    }
                }

                downloads.Add(received / 1e6 / Stopwatch.GetElapsedTime(start).TotalSeconds);
                if (received != bytes.Length || Convert.ToHexStringLower(hash.GetHashAndReset()) != sha)
                {
                    problems++;
                }
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record("PutArtifact/GetArtifact", ex);
            }
        }

        var verified = errors.Count == 0 && problems == 0 && uploads.Count == profile.ArtifactRepetitions;
        var check = verified
            ? $"{profile.ArtifactRepetitions} uploaded and downloaded, SHA-256 and size verified"
            : $"{problems} mismatches, {errors.Count} failed transfers";
        return new ArtifactTransferResult(profile.ArtifactBytes, profile.ArtifactChunkBytes, profile.ArtifactRepetitions, uploads, downloads,
            errors.Count, errors.Distinct, verified, check, target.ReadMemory());
    }
}

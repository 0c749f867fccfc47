using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Checkpoint;

/// <summary>
/// One state size: successive CreateCheckpoint calls (each changing 1% of the state, as a running
/// workflow would), then a GetCheckpoint of each (reconstructed and checksum-verified by the service).
/// </summary>
/// <param name="CanonicalBytes">Size of the canonical state the service reports (size_bytes of the last checkpoint).</param>
/// <param name="Deltas">Checkpoints the service stored as deltas (the rest are full snapshots).</param>
/// <param name="StoredBytes">Bytes the stored forms take, all checkpoints of the cell.</param>
internal sealed record CheckpointLatencyResult(
    string Label,
    int StateBytes,
    long CanonicalBytes,
    int Checkpoints,
    LatencySummary? Create,
    LatencySummary? Get,
    int Deltas,
    int FullSnapshots,
    long StoredBytes,
    long StateBytesTotal,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check,
    ServiceMemory? Memory);

/// <summary>
/// The same successive states saved by the default service (deltas) and by one storing full snapshots
/// (MaxDeltaChain = 0): what the deltas save.
/// </summary>
/// <param name="Ratio">Delta stored bytes ÷ full-snapshot stored bytes.</param>
internal sealed record CheckpointStorageResult(
    int Checkpoints,
    int StateBytes,
    long StateBytesTotal,
    long DeltaStoredBytes,
    int Deltas,
    int DeltaFullSnapshots,
    int MaxChainDepth,
    long FullStoredBytes,
    double Ratio,
    bool MeetsTarget,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check);

/// <summary>Uploading (PutArtifact, client stream) and downloading (GetArtifact, server stream) new artifacts, MB/s = 10^6 bytes per second.</summary>
internal sealed record ArtifactTransferResult(
    long Bytes,
    int ChunkBytes,
    int Repetitions,
    IReadOnlyList<double> UploadMBps,
    IReadOnlyList<double> DownloadMBps,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check,
    ServiceMemory? Memory)
{
    public double UploadMedianMBps => Median(UploadMBps);

    public double DownloadMedianMBps => Median(DownloadMBps);

    private static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}

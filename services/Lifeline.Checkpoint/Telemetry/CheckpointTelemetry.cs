using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lifeline.Checkpoint.Checkpoints;

namespace Lifeline.Checkpoint.Telemetry;

/// <summary>
/// The checkpoint service's spans (ActivitySource <c>Lifeline.Checkpoint</c>) and metrics (Meter <c>Lifeline.Checkpoint</c>):
/// checkpoints written, their state and stored sizes, and how long a write took (encoding and transaction), recorded
/// after the write committed. Tagged by how the state was stored (full or delta) only.
/// </summary>
public sealed class CheckpointTelemetry
{
    public const string Name = "Lifeline.Checkpoint";
    public const string WritesName = "lifeline.checkpoint.writes";
    public const string SizeName = "lifeline.checkpoint.size";
    public const string StoredSizeName = "lifeline.checkpoint.stored_size";
    public const string WriteDurationName = "lifeline.checkpoint.write.duration";
    public const string StorageTag = "lifeline.checkpoint.storage";

    public static readonly ActivitySource Source = new(Name);

    private static readonly long[] SizeBuckets = [256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864];
    private static readonly double[] DurationBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly Counter<long> _writes;
    private readonly Histogram<long> _size, _stored;
    private readonly Histogram<double> _duration;

    public CheckpointTelemetry(IMeterFactory meters)
    {
        var meter = meters.Create(Name);
        _writes = meter.CreateCounter<long>(WritesName, "{checkpoint}", "Checkpoints written.");
        _size = meter.CreateHistogram<long>(SizeName, "By", "Size of a written checkpoint's state (canonical JSON).", tags: null,
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = SizeBuckets });
        _stored = meter.CreateHistogram<long>(StoredSizeName, "By", "Bytes a written checkpoint took in the store (full or delta, compressed).", tags: null,
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = SizeBuckets });
        _duration = meter.CreateHistogram<double>(WriteDurationName, "s", "How long writing a checkpoint took, encoding and transaction.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
    }

    /// <summary>A committed write that started at <paramref name="startedAt"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public void Written(CheckpointRecord record, long startedAt)
    {
        var storage = new KeyValuePair<string, object?>(StorageTag, record.StorageKind == Storage.EncodedState.Full ? "full" : "delta");
        _writes.Add(1, storage);
        _size.Record(record.SizeBytes, storage);
        _stored.Record(record.StoredBytes, storage);
        _duration.Record(Stopwatch.GetElapsedTime(startedAt).TotalSeconds, storage);
    }
}

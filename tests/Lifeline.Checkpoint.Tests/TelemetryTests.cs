using Lifeline.Checkpoint.Telemetry;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>The checkpoint service's metrics against a real store: each committed write counted with its state size, stored size and latency.</summary>
public sealed class TelemetryTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Each_written_checkpoint_is_counted_with_its_sizes_and_write_latency_by_storage_kind()
    {
        using var recorded = new HostMeasurements(env.Checkpoint, CheckpointTelemetry.Name);
        var client = env.Checkpoint.Checkpoints();
        var workflow = NewWorkflow();

        var written = new List<CheckpointMetadata>();
        for (var i = 1; i <= 3; i++)
        {
            written.Add((await client.CreateCheckpointAsync(Create(workflow, SmallState(i)))).Metadata);
        }

        Assert.Equal(3, recorded.Sum(CheckpointTelemetry.WritesName));
        Assert.Equal(written.Select(w => (double)w.SizeBytes), recorded.Values(CheckpointTelemetry.SizeName));
        Assert.Equal(written.Select(w => (double)w.StoredBytes), recorded.Values(CheckpointTelemetry.StoredSizeName));
        foreach (var kind in new[] { StorageKind.Full, StorageKind.Delta })
        {
            var tag = (CheckpointTelemetry.StorageTag, (object?)(kind == StorageKind.Full ? "full" : "delta"));
            Assert.Equal(written.Count(w => w.StorageKind == kind), recorded.Sum(CheckpointTelemetry.WritesName, tag));
        }
        Assert.Equal(3, recorded.Values(CheckpointTelemetry.WriteDurationName).Count);
        Assert.All(recorded.Values(CheckpointTelemetry.WriteDurationName), d => Assert.InRange(d, 0.0, 30.0));

        var scrape = await RuleMetrics.ScrapeAsync(env.Checkpoint);
        Assert.Contains("lifeline_checkpoint_writes_total", scrape);
        Assert.Contains("lifeline_checkpoint_write_duration_seconds_bucket", scrape);
        Assert.Contains("lifeline_checkpoint_size_bytes_bucket", scrape);
    }
}

using Lifeline.Backup.Telemetry;
using Lifeline.Backup.V1;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Backup.Tests;

/// <summary>
/// The backup service's metrics against a real target: a completed backup and a completed restore counted with their
/// durations and sizes, the time of the target's last completed backup sampled from the catalog, and a /metrics scrape
/// that has every backup metric the alerting rules use.
/// </summary>
public sealed class TelemetryTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_backup_and_a_restore_are_measured_and_the_last_success_is_sampled_and_scraped()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        using var recorded = new HostMeasurements(host, BackupTelemetry.Name);
        var client = host.Backups();

        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        (string, object?) ofTarget = (BackupTelemetry.TargetTag, target.Name);
        (string, object?) succeeded = (BackupTelemetry.ResultTag, "completed");
        Assert.Equal(1, recorded.Sum(BackupTelemetry.BackupsName, ofTarget, succeeded, (BackupTelemetry.TypeTag, "full")));
        Assert.Equal(full.SizeBytes, Assert.Single(recorded.Values(BackupTelemetry.BackupSizeName, ofTarget)));
        // The histogram's duration is read off the same clock as the catalog's duration_ms, a moment later.
        var seconds = Assert.Single(recorded.Values(BackupTelemetry.BackupDurationName, ofTarget, succeeded));
        Assert.InRange(seconds, full.DurationMs / 1000.0, full.DurationMs / 1000.0 + 1);

        var restored = await client.RestoreAsync(target.Name, full.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(restored.ReplacedDatabase));
        Assert.Equal(1, recorded.Sum(BackupTelemetry.RestoresName, ofTarget, succeeded));
        Assert.Equal(full.SizeBytes, Assert.Single(recorded.Values(BackupTelemetry.RestoreSizeName, ofTarget)));
        Assert.Single(recorded.Values(BackupTelemetry.RestoreDurationName, ofTarget));
        Assert.Equal(0, recorded.Sum(BackupTelemetry.BackupsName, (BackupTelemetry.ResultTag, "failed")));

        await host.App.Services.GetRequiredService<BackupMetricsSampler>().SampleAsync(CancellationToken.None);
        recorded.Observe();
        var completedAt = await env.ScalarAsync<DateTime>("SELECT max(completed_at) FROM backups WHERE target = @t AND status = 'completed'", ("t", target.Name));
        // The stored time has microseconds; within a millisecond (rounding to decimal places flaked at .925 vs .9257).
        Assert.Equal((completedAt - DateTime.UnixEpoch).TotalSeconds, recorded.Last(BackupTelemetry.LastSuccessName, ofTarget), tolerance: 0.001);

        var scrape = await RuleMetrics.ScrapeAsync(host);
        var expected = RuleMetrics.For("backup");
        Assert.Contains(expected, e => e.Metric == "lifeline_backup_last_success_timestamp_seconds");
        Assert.Empty(RuleMetrics.Missing(scrape, expected));
    }
}

using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lifeline.Backup.Options;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Backup.Telemetry;

/// <summary>
/// The backup service's spans (ActivitySource <c>Lifeline.Backup</c>) and metrics (Meter <c>Lifeline.Backup</c>): backups
/// and restores by result, their durations and sizes, and the time of each target's last completed backup (a gauge
/// from a periodic catalog read, so an overdue backup shows after a restart too). Tagged by target (the configured
/// targets: bounded) and backup type.
/// </summary>
public sealed class BackupTelemetry
{
    public const string Name = "Lifeline.Backup";
    public const string BackupsName = "lifeline.backup.backups";
    public const string BackupDurationName = "lifeline.backup.duration";
    public const string BackupSizeName = "lifeline.backup.size";
    public const string RestoresName = "lifeline.backup.restores";
    public const string RestoreDurationName = "lifeline.backup.restore.duration";
    public const string RestoreSizeName = "lifeline.backup.restore.size";
    public const string LastSuccessName = "lifeline.backup.last_success.timestamp";
    public const string TargetTag = "lifeline.backup.target";
    public const string TypeTag = "lifeline.backup.type";
    public const string ResultTag = "lifeline.backup.result";

    public static readonly ActivitySource Source = new(Name);

    private static readonly double[] DurationBuckets = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
    private static readonly long[] SizeBuckets = [4096, 65_536, 1_048_576, 16_777_216, 134_217_728, 1_073_741_824, 8_589_934_592, 68_719_476_736];

    private readonly Counter<long> _backups, _restores;
    private readonly Histogram<double> _backupDuration, _restoreDuration;
    private readonly Histogram<long> _backupSize, _restoreSize;
    private volatile Measurement<double>[] _lastSuccess = [];

    public BackupTelemetry(IMeterFactory meters)
    {
        var meter = meters.Create(Name);
        _backups = meter.CreateCounter<long>(BackupsName, "{backup}", "Backups taken, by target, type and result (completed, failed).");
        _restores = meter.CreateCounter<long>(RestoresName, "{restore}", "Restores run, by target and result (completed, failed).");
        _backupDuration = meter.CreateHistogram<double>(BackupDurationName, "s", "How long a backup took, by target, type and result.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _restoreDuration = meter.CreateHistogram<double>(RestoreDurationName, "s", "How long a restore took, by target and result.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _backupSize = meter.CreateHistogram<long>(BackupSizeName, "By", "Size of a completed backup's file, by target and type.", tags: null,
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = SizeBuckets });
        _restoreSize = meter.CreateHistogram<long>(RestoreSizeName, "By", "Size of the backup a completed restore restored, by target.", tags: null,
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = SizeBuckets });
        meter.CreateObservableGauge(LastSuccessName, () => _lastSuccess, "s",
            "Unix time of each target's newest completed backup, as of the last sample (targets never backed up have none).");
    }

    public void BackupEnded(string target, string type, bool completed, TimeSpan duration, long sizeBytes)
    {
        var tags = new TagList { { TargetTag, target }, { TypeTag, type }, { ResultTag, completed ? "completed" : "failed" } };
        _backups.Add(1, tags);
        _backupDuration.Record(duration.TotalSeconds, tags);
        if (completed)
        {
            _backupSize.Record(sizeBytes, new KeyValuePair<string, object?>(TargetTag, target), new KeyValuePair<string, object?>(TypeTag, type));
        }
    }

    public void RestoreEnded(string target, bool completed, TimeSpan duration, long sizeBytes)
    {
        var tags = new TagList { { TargetTag, target }, { ResultTag, completed ? "completed" : "failed" } };
        _restores.Add(1, tags);
        _restoreDuration.Record(duration.TotalSeconds, tags);
        if (completed)
        {
            _restoreSize.Record(sizeBytes, new KeyValuePair<string, object?>(TargetTag, target));
        }
    }

    public void Sampled(IEnumerable<(string Target, double UnixSeconds)> lastSuccess) =>
        _lastSuccess = [.. lastSuccess.Select(l => new Measurement<double>(l.UnixSeconds, new KeyValuePair<string, object?>(TargetTag, l.Target)))];
}

/// <summary>Reads each target's newest completed backup every <see cref="BackupOptions.MetricsSampleInterval"/>.</summary>
public sealed class BackupMetricsSampler(NpgsqlDataSource dataSource, BackupTelemetry telemetry, IOptions<BackupOptions> options,
    ILogger<BackupMetricsSampler> logger) : BackgroundLoop(logger, LoopBackoff.Between(options.Value.MetricsSampleInterval, TimeSpan.FromMinutes(1)))
{
    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await SampleAsync(stoppingToken);
        return options.Value.MetricsSampleInterval;
    }

    public async Task SampleAsync(CancellationToken ct)
    {
        var rows = new List<(string, double)>();
        await using var command = dataSource.CreateCommand(
            "SELECT target, extract(epoch FROM max(completed_at))::float8 FROM backups WHERE status = 'completed' GROUP BY target");
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            rows.Add((reader.GetString(0), reader.GetDouble(1)));
        }
        telemetry.Sampled(rows);
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lifeline.Registry.Options;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Telemetry;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Registry.Telemetry;

/// <summary>
/// The registry's spans (ActivitySource <c>Lifeline.Registry</c>) and metrics (Meter <c>Lifeline.Registry</c>): workers by
/// status, open breakers and the longest heartbeat silence among live workers (gauges, from a periodic sample), the
/// interval between a worker's heartbeats as this instance sees them, workers lost, and the loss detection time (from
/// the worker's last recorded heartbeat to the moment it was marked lost). No tag names a worker or a tenant.
/// </summary>
public sealed class RegistryTelemetry
{
    public const string Name = "Lifeline.Registry";
    public const string WorkersName = "lifeline.registry.workers";
    public const string BreakersOpenName = "lifeline.registry.breakers.open";
    public const string HeartbeatLagName = "lifeline.registry.heartbeat.lag";
    public const string HeartbeatIntervalName = "lifeline.registry.heartbeat.interval";
    public const string WorkersLostName = "lifeline.registry.workers.lost";
    public const string LossDetectionName = "lifeline.registry.loss_detection.duration";
    public const string StatusTag = "lifeline.worker.status";

    public static readonly ActivitySource Source = new(Name);

    private static readonly double[] SecondsBuckets = [0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300];

    // Every status a worker may have (ck_workers_status): each reported, 0 when none has it.
    private static readonly string[] Statuses = ["online", "busy", "draining", "offline", "error"];

    private readonly Counter<long> _lost;
    private readonly Histogram<double> _detection, _interval;
    private readonly ConcurrentDictionary<(string Tenant, Guid Worker), long> _lastBeat = new();
    private volatile Measurement<long>[] _workers = [];
    private long _breakersOpen;
    private double _heartbeatLag;

    public RegistryTelemetry(IMeterFactory meters)
    {
        var meter = meters.Create(Name);
        _lost = meter.CreateCounter<long>(WorkersLostName, "{worker}", "Workers marked lost because their heartbeat lapsed.");
        _detection = meter.CreateHistogram<double>(LossDetectionName, "s",
            "From a lost worker's last recorded heartbeat to the moment it was marked lost.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        _interval = meter.CreateHistogram<double>(HeartbeatIntervalName, "s", "Time between two heartbeats of a worker seen by this instance.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        meter.CreateObservableGauge(WorkersName, () => _workers, "{worker}", "Registered workers by status, as of the last sample.");
        meter.CreateObservableGauge(BreakersOpenName, () => Interlocked.Read(ref _breakersOpen), "{breaker}", "Circuit breakers open, as of the last sample.");
        meter.CreateObservableGauge(HeartbeatLagName, () => Volatile.Read(ref _heartbeatLag), "s",
            "The longest time since the last recorded heartbeat among workers not offline, as of the last sample (recorded heartbeats are flushed every HeartbeatFlushInterval).");
    }

    /// <summary>A heartbeat accepted now: records the interval since the worker's previous one seen here.</summary>
    public void Beat(string tenant, Guid worker)
    {
        var now = Stopwatch.GetTimestamp();
        var previous = _lastBeat.GetValueOrDefault((tenant, worker));
        _lastBeat[(tenant, worker)] = now;
        if (previous != 0)
        {
            _interval.Record(Stopwatch.GetElapsedTime(previous, now).TotalSeconds);
        }
    }

    /// <summary>A worker marked lost now, whose last recorded heartbeat was at <paramref name="lastHeartbeatAt"/>.</summary>
    public void Lost(string tenant, Guid worker, DateTime? lastHeartbeatAt, DateTime now)
    {
        _lastBeat.TryRemove((tenant, worker), out _);
        _lost.Add(1);
        if (lastHeartbeatAt is { } last)
        {
            _detection.Record(Math.Max(0, (now - last).TotalSeconds));
        }
    }

    /// <summary>Replaces the sampled gauges; forgets heartbeat clocks older than <paramref name="forgetAfter"/>.</summary>
    public void Sampled(IReadOnlyDictionary<string, long> workersByStatus, long breakersOpen, double heartbeatLagSeconds, TimeSpan forgetAfter)
    {
        _workers = [.. Statuses.Select(s => new Measurement<long>(workersByStatus.GetValueOrDefault(s), new KeyValuePair<string, object?>(StatusTag, s)))];
        Interlocked.Exchange(ref _breakersOpen, breakersOpen);
        Volatile.Write(ref _heartbeatLag, heartbeatLagSeconds);
        var now = Stopwatch.GetTimestamp();
        foreach (var (key, at) in _lastBeat)
        {
            if (Stopwatch.GetElapsedTime(at, now) > forgetAfter)
            {
                _lastBeat.TryRemove(key, out _);
            }
        }
    }
}

/// <summary>Samples the registry's gauges every <see cref="RegistryOptions.MetricsSampleInterval"/> with two grouped counts.</summary>
public sealed class RegistryMetricsSampler(NpgsqlDataSource dataSource, RegistryTelemetry telemetry, IOptions<RegistryOptions> options,
    ILogger<RegistryMetricsSampler> logger) : BackgroundLoop(logger, LoopBackoff.Between(options.Value.MetricsSampleInterval, TimeSpan.FromMinutes(1)))
{
    private const string Sql = """
        SELECT status, count(*),
               COALESCE(extract(epoch FROM now() - min(last_heartbeat_at) FILTER (WHERE status <> 'offline')), 0)::float8
        FROM workers WHERE deregistered_at IS NULL GROUP BY status;
        SELECT count(*) FROM circuit_breakers WHERE state = 'open';
        """;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await SampleAsync(stoppingToken);
        return options.Value.MetricsSampleInterval;
    }

    public async Task SampleAsync(CancellationToken ct)
    {
        var byStatus = new Dictionary<string, long>(StringComparer.Ordinal);
        var lag = 0.0;
        long open;
        await using (var command = dataSource.CreateCommand(Sql))
        {
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                byStatus[reader.GetString(0)] = reader.GetInt64(1);
                lag = Math.Max(lag, reader.GetDouble(2));
            }
            await reader.NextResultAsync(ct);
            await reader.ReadAsync(ct);
            open = reader.GetInt64(0);
        }
        telemetry.Sampled(byStatus, open, lag, options.Value.HeartbeatTtl * 10);
    }
}

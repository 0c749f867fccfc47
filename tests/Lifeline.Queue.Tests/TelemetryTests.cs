using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.Telemetry;
using Lifeline.Queue.V1;
using Lifeline.ServiceDefaults.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A queue whose background passes run only when a test runs them (maintenance, depth sampling), with a second
/// instance whose logs keep their scopes (<see cref="ScopedLogs"/>).
/// </summary>
public sealed class TelemetryQueueEnvironment : QueueEnvironment
{
    private static readonly Dictionary<string, string?> Quiet = new()
    {
        ["Queue:MaintenanceInterval"] = "00:10:00",
        ["Queue:DepthSampleInterval"] = "00:10:00",
    };

    public ScopedLogs Logs { get; } = new();

    public ServiceHost Logged { get; private set; } = null!;

    protected override IDictionary<string, string?>? Settings => new Dictionary<string, string?>(Quiet);

    protected override async Task OnInitializedAsync()
    {
        await base.OnInitializedAsync();
        Logged = await StartInstanceAsync(new Dictionary<string, string?>(Quiet), builder =>
        {
            builder.Logging.AddProvider(Logs);
            builder.Logging.AddFilter<ScopedLogs>(null, LogLevel.Information);
        });
    }
}

/// <summary>
/// The queue's telemetry against a real store: counters and histograms recorded once per committed change and tagged by
/// task type, the sampled depth and age gauges, the enqueue's trace context stored with the task and linked from the
/// spans of its later steps, log scopes naming tenant, task, worker and trace, and a /metrics scrape that has every
/// queue metric the alerting rules use.
/// </summary>
public sealed class TelemetryTests(TelemetryQueueEnvironment env) : IClassFixture<TelemetryQueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Task_counters_and_latencies_are_recorded_once_per_committed_change_by_task_type()
    {
        using var recorded = new QueueMeasurements(env.Queue);
        var type = NewType("telemetry.counts");

        var first = Spec(type, maxRetries: 0);
        first.IdempotencyKey = "same";
        var created = await Client.EnqueueAsync(first);
        var repeated = await Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = first }); // same key: nothing created
        Assert.False(repeated.Created);
        var second = await Client.EnqueueAsync(Spec(type, maxRetries: 0));
        var third = await Client.EnqueueAsync(Spec(type, maxRetries: 0));

        var leased = await Client.LeaseAsync("telemetry-worker", type, max: 3);
        Assert.Equal(3, leased.Count);
        var toComplete = leased[0];
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = toComplete.Id, FencingToken = toComplete.FencingToken });
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = toComplete.Id, FencingToken = toComplete.FencingToken });
        // A repeated completion is answered as before and changes nothing: it counts nothing.
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = toComplete.Id, FencingToken = toComplete.FencingToken });
        await Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = leased[1].Id, FencingToken = leased[1].FencingToken,
            Error = new ErrorDetail { Code = "BROKEN", Message = "not retryable", Retryable = false, Severity = Severity.High },
        });
        await Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = leased[2].Id, FencingToken = leased[2].FencingToken,
            Error = new ErrorDetail { Code = "FLAKY", Message = "retryable, but no retries left", Retryable = true, Severity = Severity.Medium },
        });

        Assert.Equal(3, recorded.Sum(QueueTelemetry.EnqueuedName, type));
        Assert.Equal(3, recorded.Sum(QueueTelemetry.LeasedName, type));
        Assert.Equal(1, recorded.Sum(QueueTelemetry.CompletedName, type));
        Assert.Equal(2, recorded.Sum(QueueTelemetry.FailedName, type));
        Assert.Equal(1, recorded.Sum(QueueTelemetry.FailedName, type, (QueueTelemetry.FailureOutcomeTag, "failed")));
        Assert.Equal(1, recorded.Sum(QueueTelemetry.FailedName, type, (QueueTelemetry.FailureOutcomeTag, "dead_lettered")));
        Assert.Equal(1, recorded.Sum(QueueTelemetry.DeadLetteredName, type));

        // Latencies as the store's timestamps say: one start, one completion.
        var started = (await Client.GetTaskAsync(new GetTaskRequest { TaskId = toComplete.Id })).Task;
        var wait = Assert.Single(recorded.Values(QueueTelemetry.EnqueueToStartName, type));
        Assert.Equal((started.StartedAt.ToDateTime() - started.CreatedAt.ToDateTime()).TotalSeconds, wait, 3);
        var run = Assert.Single(recorded.Values(QueueTelemetry.LeaseToCompleteName, type));
        Assert.Equal((started.CompletedAt.ToDateTime() - started.AssignedAt.ToDateTime()).TotalSeconds, run, 3);
        Assert.All(new[] { created, second, third }, t => Assert.Equal(type, t.Type));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Depth_and_oldest_ready_age_gauges_report_the_last_sample_of_ready_tasks_by_type()
    {
        var type = NewType("telemetry.depth");
        var future = NewType("telemetry.later");
        for (var i = 0; i < 4; i++)
        {
            await Client.EnqueueAsync(Spec(type));
        }
        var notDue = Spec(future);
        notDue.NotBefore = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(DateTime.UtcNow.AddHours(1));
        await Client.EnqueueAsync(notDue);
        await Task.Delay(TimeSpan.FromMilliseconds(300)); // the oldest is measurably old

        await env.Queue.App.Services.GetRequiredService<QueueDepthSampler>().SampleAsync(CancellationToken.None);
        using var recorded = new QueueMeasurements(env.Queue);
        recorded.Observe();

        Assert.Equal(4, recorded.Last(QueueTelemetry.DepthName, type));
        Assert.InRange(recorded.Last(QueueTelemetry.OldestReadyAgeName, type), 0.25, 60);
        Assert.Null(recorded.LastOrNull(QueueTelemetry.DepthName, future)); // not due: not ready

        // Leased away: the next sample says 0 (the series stays, dropping to zero).
        Assert.Equal(4, (await Client.LeaseAsync("telemetry-depth", type, max: 10)).Count);
        await env.Queue.App.Services.GetRequiredService<QueueDepthSampler>().SampleAsync(CancellationToken.None);
        recorded.Observe();
        Assert.Equal(0, recorded.Last(QueueTelemetry.DepthName, type));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_enqueue_trace_context_is_stored_with_the_task_and_linked_from_its_lease_start_completion_and_recovery()
    {
        using var spans = new RecordedSpans(QueueTelemetry.Name);
        var type = NewType("telemetry.trace");

        var task = await Client.EnqueueAsync(Spec(type));
        var enqueue = spans.Single("queue.enqueue", task.Id);
        var stored = await env.ScalarAsync<string>("SELECT trace_parent FROM tasks WHERE id = @id", ("id", Guid.Parse(task.Id)));
        Assert.Equal(enqueue.Id, stored); // W3C traceparent: 00-<trace id>-<span id>-<flags>
        Assert.Matches("^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", stored); // recorded (sampled): only such contexts are stored

        var leased = Assert.Single(await Client.LeaseAsync("telemetry-tracer", type));
        await Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        await Client.ReportProgressAsync(new ReportProgressRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Percent = 50 });
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });

        var lease = spans.All("queue.lease").Single(s => s.Links.Any(l => l.Context.SpanId == enqueue.SpanId));
        Assert.Equal("telemetry-tracer", lease.GetTagItem(TaskTrace.WorkerIdTag));
        foreach (var step in new[] { "queue.start", "queue.progress", "queue.complete" })
        {
            var span = spans.Single(step, task.Id);
            var link = Assert.Single(span.Links);
            Assert.Equal(enqueue.TraceId, link.Context.TraceId);
            Assert.Equal(enqueue.SpanId, link.Context.SpanId);
            Assert.Equal(type, span.GetTagItem(TaskTrace.TaskTypeTag));
            Assert.NotEqual(enqueue.TraceId, span.TraceId); // each step its own trace, linked to the task's story
        }

        // Recovery (after the lease expired) links to the same enqueue.
        var recoverable = await Client.EnqueueAsync(Spec(type));
        var recoverableEnqueue = spans.Single("queue.enqueue", recoverable.Id);
        var held = Assert.Single(await Client.LeaseAsync("telemetry-lost", type, leaseSeconds: 1));
        await Task.Delay(TimeSpan.FromMilliseconds(1300));
        var recovered = await Client.RecoverTaskAsync(new RecoverTaskRequest
        {
            TaskId = held.Id, FencingToken = held.FencingToken, Action = RecoveryAction.Requeue, CountRetry = true,
            Reason = new ErrorDetail { Code = "WORKER_LOST", Message = "gone", Retryable = true, Severity = Severity.High },
        });
        Assert.Equal(RecoverOutcome.Requeued, recovered.Outcome);
        var recover = spans.Single("queue.recover", recoverable.Id);
        Assert.Equal(recoverableEnqueue.SpanId, Assert.Single(recover.Links).Context.SpanId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_refused_holder_call_ends_its_span_as_an_error()
    {
        using var spans = new RecordedSpans(QueueTelemetry.Name);
        var type = NewType("telemetry.refused");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("telemetry-refused", type));

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken + 7 }).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, error.StatusCode);
        var span = spans.Single("queue.complete", task.Id);
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Empty(span.Links); // no answer, no task to link to
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Log_scopes_name_the_tenant_task_worker_and_trace_of_a_message()
    {
        using var spans = new RecordedSpans(QueueTelemetry.Name); // a span is current while the recovery logs: its trace id joins the scope
        var client = env.Logged.Client();
        var type = NewType("telemetry.scopes");
        var task = await client.EnqueueAsync(Spec(type));
        var held = Assert.Single(await client.LeaseAsync("telemetry-scoped-worker", type, leaseSeconds: 1));
        await Task.Delay(TimeSpan.FromMilliseconds(1300));

        await client.RecoverTaskAsync(new RecoverTaskRequest
        {
            TaskId = held.Id, FencingToken = held.FencingToken, Action = RecoveryAction.Requeue, CountRetry = true,
            Reason = new ErrorDetail { Code = "WORKER_LOST", Message = "gone", Retryable = true, Severity = Severity.High },
        });

        var entry = Assert.Single(env.Logs.Entries, e => e.EventId == 1701 && e.Message.Contains(task.Id, StringComparison.Ordinal));
        Assert.Equal("default", entry.Scope[TaskTrace.TenantTag]);
        Assert.Equal(task.Id, entry.Scope[TaskTrace.TaskIdTag]);
        Assert.Equal("telemetry-scoped-worker", entry.Scope[TaskTrace.WorkerIdTag]);
        var recover = spans.Single("queue.recover", task.Id);
        Assert.Equal(recover.TraceId.ToHexString(), entry.Scope["TraceId"]);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Metrics_endpoint_exposes_every_queue_metric_the_alerting_rules_use_after_real_traffic()
    {
        var type = NewType("telemetry.scrape");
        var waiting = NewType("telemetry.backlog");
        await Client.EnqueueAsync(Spec(waiting)); // stays ready: the oldest-age gauge has a series
        await Client.EnqueueAsync(Spec(type, maxRetries: 0));
        await Client.EnqueueAsync(Spec(type, maxRetries: 0));
        var leased = await Client.LeaseAsync("telemetry-scraped", type, max: 2);
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = leased[0].Id, FencingToken = leased[0].FencingToken });
        await Client.FailTaskAsync(new FailTaskRequest
        {
            TaskId = leased[1].Id, FencingToken = leased[1].FencingToken,
            Error = new ErrorDetail { Code = "BROKEN", Message = "no", Retryable = false, Severity = Severity.High },
        });
        await env.Queue.App.Services.GetRequiredService<QueueDepthSampler>().SampleAsync(CancellationToken.None);

        // No identity: /metrics is open to a scraper on this host, like health.
        var scrape = await RuleMetrics.ScrapeAsync(env.Queue);

        var expected = RuleMetrics.For("queue");
        Assert.Contains(expected, e => e.Metric == "lifeline_queue_tasks_failed_total");
        Assert.Empty(RuleMetrics.Missing(scrape, expected));
        Assert.Contains($"lifeline_task_type=\"{type}\"", scrape);
        Assert.Contains("lifeline_queue_task_lease_to_complete_duration_seconds_bucket", scrape);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Prometheus_scrapes_the_same_metrics_over_http1_on_the_loopback_listener_port()
    {
        var port = FreePort.Next();
        var instance = await env.StartInstanceAsync(new Dictionary<string, string?>
        {
            ["Queue:MaintenanceInterval"] = "00:10:00",
            ["Telemetry:PrometheusPort"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        var type = NewType("telemetry.listener");
        await instance.Client().EnqueueAsync(Spec(type));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) }; // HTTP/1.1, as Prometheus scrapes
        var scrape = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");

        Assert.Contains($"lifeline_queue_tasks_enqueued_total{{", scrape);
        Assert.Contains($"lifeline_task_type=\"{type}\"", scrape);
    }
}

/// <summary>What one queue host's Meter recorded while this lives (other hosts of the test process are left out).</summary>
internal sealed class QueueMeasurements : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, double Value, KeyValuePair<string, object?>[] Tags)> _measurements = new();

    public QueueMeasurements(ServiceHost host)
    {
        var factory = host.App.Services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == QueueTelemetry.Name && ReferenceEquals(instrument.Meter.Scope, factory))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => _measurements.Enqueue((i.Name, v, tags.ToArray())));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => _measurements.Enqueue((i.Name, v, tags.ToArray())));
        _listener.Start();
    }

    /// <summary>Reads the observable gauges now.</summary>
    public void Observe() => _listener.RecordObservableInstruments();

    public IEnumerable<double> Values(string name, string type, params (string Key, string Value)[] tags) =>
        _measurements.Where(m => m.Name == name && Has(m.Tags, TaskTrace.TaskTypeTag, type) && tags.All(t => Has(m.Tags, t.Key, t.Value)))
            .Select(m => m.Value);

    public double Sum(string name, string type, params (string Key, string Value)[] tags) => Values(name, type, tags).Sum();

    public double? LastOrNull(string name, string type) => Values(name, type).Select(v => (double?)v).LastOrDefault();

    public double Last(string name, string type) => LastOrNull(name, type) ?? throw new Xunit.Sdk.XunitException($"no {name} for {type}");

    private static bool Has(KeyValuePair<string, object?>[] tags, string key, string value) => tags.Any(t => t.Key == key && Equals(t.Value, value));

    public void Dispose() => _listener.Dispose();
}


/// <summary>A logger provider that keeps each entry with the key/value pairs of its scopes.</summary>
public sealed class ScopedLogs : ILoggerProvider, ISupportExternalScope
{
    private readonly ConcurrentQueue<Entry> _entries = new();
    private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

    public sealed record Entry(string Category, int EventId, string Message, IReadOnlyDictionary<string, object?> Scope);

    public IReadOnlyList<Entry> Entries => [.. _entries];

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, this);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ScopedLogs owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => owner._scopes.Push(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var scope = new Dictionary<string, object?>();
            owner._scopes.ForEachScope((s, into) =>
            {
                if (s is IEnumerable<KeyValuePair<string, object?>> pairs)
                {
                    foreach (var (key, value) in pairs)
                    {
                        into[key] = value;
                    }
                }
            }, scope);
            owner._entries.Enqueue(new Entry(category, eventId.Id, formatter(state, exception), scope));
        }
    }
}

using System.Collections.Concurrent;
using System.Text;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// With <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> set, the queue exports traces (its own spans and PostgreSQL's) and logs with
/// their scopes over OTLP: a real OTLP/HTTP receiver on loopback gets them. (The payloads are protobuf; the names and
/// attribute values are plain UTF-8 inside, which is what is looked for.)
/// </summary>
public sealed class OtlpExportTests(TelemetryQueueEnvironment env) : IClassFixture<TelemetryQueueEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Traces_with_postgres_spans_and_logs_with_scopes_reach_an_otlp_receiver()
    {
        using var diag = new OtelEvents();
        await using var receiver = await OtlpReceiver.StartAsync();
        var settings = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Address,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_SERVICE_NAME"] = "lifeline-queue-otlp-test",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
            ["OTEL_BLRP_SCHEDULE_DELAY"] = "100",
            ["Queue:MaintenanceInterval"] = "00:10:00",
        };
        var instance = await env.StartInstanceAsync(settings, builder =>
            builder.Logging.AddFilter<OpenTelemetry.Logs.OpenTelemetryLoggerProvider>(null, LogLevel.Information));
        Assert.NotNull(instance.App.Services.GetService<OpenTelemetry.Trace.TracerProvider>());
        var cfg = instance.App.Services.GetRequiredService<Microsoft.Extensions.Configuration.IConfiguration>();
        var client = instance.Client();
        var type = NewType("otlp.export");
        var task = await client.EnqueueAsync(Spec(type));
        var held = Assert.Single(await client.LeaseAsync("otlp-worker", type, leaseSeconds: 1));
        await Task.Delay(TimeSpan.FromMilliseconds(1300));
        await client.RecoverTaskAsync(new RecoverTaskRequest
        {
            TaskId = held.Id, FencingToken = held.FencingToken, Action = RecoveryAction.Requeue, CountRetry = true,
            Reason = new ErrorDetail { Code = "WORKER_LOST", Message = "gone", Retryable = true, Severity = Severity.High },
        });

        await instance.DisposeAsync(); // disposing the providers flushes the exporters

        var traces = receiver.Received("/v1/traces");
        Assert.True(traces.Length > 0, "received: " + receiver.Summary + string.Join("\n", diag.Lines.Where(l => !l.Contains("MetricInstrumentIgnored", StringComparison.Ordinal)).Take(20)));
        Assert.Contains("lifeline-queue-otlp-test", traces);
        Assert.Contains("queue.enqueue", traces);
        Assert.Contains("queue.lease", traces);
        Assert.Contains("queue.recover", traces);
        Assert.Contains(task.Id, traces); // the lifeline.task.id attribute
        Assert.Contains("postgresql", traces); // Npgsql's spans (db.system)
        var logs = receiver.Received("/v1/logs");
        Assert.Contains("Recovered task", logs); // event 1701, with its scope's attributes:
        Assert.Contains("lifeline.tenant", logs);
        Assert.Contains("lifeline.worker.id", logs);
        Assert.Contains("otlp-worker", logs);
        Assert.Contains("lifeline.queue.tasks.enqueued", receiver.Received("/v1/metrics"));
    }

    private sealed class OtelEvents : System.Diagnostics.Tracing.EventListener
    {
        public ConcurrentQueue<string> Lines { get; } = new();
        protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
        {
            if (source.Name.StartsWith("OpenTelemetry", StringComparison.Ordinal))
            {
                EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Warning);
            }
        }
        protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e) =>
            Lines.Enqueue($"{e.EventSource.Name} {e.EventName} {string.Join(" | ", e.Payload ?? [])}");
    }

    /// <summary>An OTLP/HTTP receiver on a loopback port: keeps the body of every POST by path.</summary>
    private sealed class OtlpReceiver : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ConcurrentQueue<(string Path, byte[] Body)> _bodies = new();

        private OtlpReceiver(WebApplication app) => _app = app;

        public string Address { get; private set; } = "";

        public static async Task<OtlpReceiver> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            // HTTP/1.1, as OTLP/HTTP exporters send (the services' appsettings in this folder make Kestrel HTTP/2-only otherwise).
            builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0,
                o => o.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1AndHttp2));
            builder.Logging.ClearProviders();
            var app = builder.Build();
            var receiver = new OtlpReceiver(app);
            app.MapPost("/v1/{signal}", async (HttpContext context) =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                receiver._bodies.Enqueue((context.Request.Path.Value!, body.ToArray()));
                context.Response.ContentType = "application/x-protobuf";
            });
            await app.StartAsync();
            receiver.Address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return receiver;
        }

        /// <summary>Everything posted to <paramref name="path"/>, as text (protobuf strings are UTF-8 in the bytes).</summary>
        public string Received(string path) =>
            string.Join("\n", _bodies.Where(b => b.Path == path).Select(b => Encoding.UTF8.GetString(b.Body)));

        public string Summary => string.Join(", ", _bodies.Select(b => $"{b.Path} {b.Body.Length}"));

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}

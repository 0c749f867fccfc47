using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// The Aspire dashboard of the test-started suite, through a real browser: Debian's chromium driven by Playwright
/// (which is never allowed to download a browser of its own). Every resource is running and healthy, and the trace
/// of a task — enqueued over REST, leased, started and completed over gRPC, all under one trace id the gateway was
/// given — shows spans of the gateway, the queue and PostgreSQL. Screenshots go to TestResults/dashboard/.
/// </summary>
[Collection(SuiteCollection.Name)]
public sealed class DashboardTests(SuiteFixture suite, ITestOutputHelper output)
{
    private const string Chromium = "/usr/bin/chromium";
    private const string TaskType = "e2e.dashboard";
    private static readonly string[] ProcessResources = ["postgres", "redis", "registry", "queue", "checkpoint", "recovery", "backup", "gateway"];
    private static readonly TimeSpan UiTimeout = TimeSpan.FromSeconds(90);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Dashboard_shows_every_resource_running_and_healthy_and_a_task_trace_across_gateway_queue_and_postgres()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: run build/setup.sh (it installs Debian's chromium)");

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = Chromium, Headless = true, Timeout = 60_000,
            // As root (CI containers) chromium needs --no-sandbox; /dev/shm may be small.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1680, Height = 1050 } });
        page.SetDefaultTimeout(60_000);
        var screenshots = Path.Combine(suite.RepositoryRoot, "TestResults", "dashboard");
        Directory.CreateDirectory(screenshots);

        // The login link the AppHost prints, with this suite's token; it lands on the resources page.
        await page.GotoAsync(suite.DashboardLogin.ToString());
        await page.WaitForURLAsync(url => !url.Contains("/login", StringComparison.Ordinal));
        var rows = await EventuallyAsync(async () =>
        {
            var texts = await ResourceRowsAsync(page);
            var notReady = ProcessResources
                .Select(name => (Name: name, Row: texts.Where(r => r.Cells.Contains(name)).Select(r => r.Text).FirstOrDefault()))
                .Where(r => r.Row is null || !r.Row.Contains("Running", StringComparison.Ordinal) || BadState(r.Row))
                .ToList();
            return notReady.Count == 0 ? texts : null;
        }, UiTimeout, async () => $"every resource running and healthy; the page shows:\n{await page.InnerTextAsync("body")}");
        Assert.DoesNotContain(rows, r => BadState(r.Text));
        await page.ScreenshotAsync(new() { Path = Path.Combine(screenshots, "resources.png") });

        // The trace: the gateway's spans, the queue's, and the queue's PostgreSQL calls (Npgsql's spans, db.system postgresql).
        // Span export is best effort by design: each service's OpenTelemetry exporter has a bounded queue and drops spans
        // when the dashboard falls behind (as when the fuzz tests flood the gateway on a loaded machine). So a trace whose
        // gateway spans never arrive is run again with a fresh trace id, up to TraceAttempts times; a dashboard that never
        // shows one whole trace still fails.
        var misses = new List<string>();
        for (var attempt = 1; ; attempt++)
        {
            var traceId = ActivityTraceId.CreateRandom().ToHexString();
            var taskId = await RunTaskAsync(traceId);
            try
            {
                var text = await TraceDetailAsync(page, traceId, taskId);
                output.WriteLine(text);
                break;
            }
            catch (TimeoutException e) when (attempt < TraceAttempts)
            {
                misses.Add(e.Message);
                output.WriteLine($"attempt {attempt}: {e.Message}");
            }
            catch (TimeoutException e)
            {
                throw new TimeoutException($"no whole trace in {TraceAttempts} attempts:\n{string.Join("\n", misses)}\n{e.Message}", e);
            }
        }
        await page.ScreenshotAsync(new() { Path = Path.Combine(screenshots, "trace.png") });
    }

    private const int TraceAttempts = 3;
    private static readonly string[] TraceMarks = ["gateway", "queue", "QueueService/CompleteTask", "postgresql", "queuedb"];

    /// <summary>
    /// The trace detail page's text once it shows every mark. The page shows the spans the dashboard held when it was
    /// loaded and does not add later ones (the gateway's may come seconds after the queue's when its exporter is behind),
    /// so each look loads it again, then gives its circuit up to 15 s to render the span grid ("Total spans").
    /// </summary>
    private async Task<string> TraceDetailAsync(IPage page, string traceId, string taskId)
    {
        var detail = new Uri(suite.DashboardLogin, $"/traces/detail/{traceId}").ToString();
        return await EventuallyAsync(async () =>
        {
            await page.GotoAsync(detail);
            var body = "";
            for (var rendered = Stopwatch.StartNew(); rendered.Elapsed < TimeSpan.FromSeconds(15); await page.WaitForTimeoutAsync(500))
            {
                body = await page.InnerTextAsync("body");
                if (body.Contains("Total spans", StringComparison.Ordinal))
                {
                    break;
                }
            }
            return TraceMarks.All(m => body.Contains(m, StringComparison.Ordinal)) ? body : null;
        }, TimeSpan.FromSeconds(40), async () =>
        {
            var body = await page.InnerTextAsync("body");
            return $"trace {traceId} (task {taskId}) with gateway, queue and postgres spans, missing " +
                   $"[{string.Join(", ", TraceMarks.Where(m => !body.Contains(m, StringComparison.Ordinal)))}]; the page shows:\n{body}";
        });
    }

    private static bool BadState(string rowText) =>
        rowText.Contains("Unhealthy", StringComparison.Ordinal) || rowText.Contains("Exited", StringComparison.Ordinal) ||
        rowText.Contains("Failed", StringComparison.Ordinal) || rowText.Contains("Finished", StringComparison.Ordinal) ||
        rowText.Contains("Waiting", StringComparison.Ordinal) || rowText.Contains("Starting", StringComparison.Ordinal);

    /// <summary>Each row of the resources grid: its text and its cells' texts.</summary>
    private static async Task<List<(string Text, HashSet<string> Cells)>> ResourceRowsAsync(IPage page)
    {
        var rows = new List<(string, HashSet<string>)>();
        foreach (var row in await page.GetByRole(AriaRole.Row).AllAsync())
        {
            var text = await row.InnerTextAsync();
            rows.Add((text, text.Split(['\n', '\t'], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal)));
        }

        return rows;
    }

    /// <summary>Enqueues a task over REST, then leases, starts and completes it over gRPC, every call carrying <paramref name="traceId"/>.</summary>
    private async Task<string> RunTaskAsync(string traceId)
    {
        // A fresh header collection per call: the suite's channel adds the authorization header to it.
        Metadata Traced() => new() { { "x-trace-id", traceId } };
        var body = new JsonObject { ["task"] = new JsonObject { ["type"] = TaskType, ["payload"] = """{"shown":"in the dashboard"}""" } }.ToJsonString();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(suite.GatewayRest, "/api/v1/tasks"))
        {
            Version = HttpVersion.Version11,
            Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", suite.Credentials.Key(Keys.DefaultWorker).Key);
        request.Headers.Add("x-trace-id", traceId);
        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"POST /api/v1/tasks answered {(int)response.StatusCode}: {text}");
        Assert.Equal(traceId, response.Headers.GetValues("x-trace-id").Single());
        var taskId = JsonNode.Parse(text)?["task"]?["id"]?.GetValue<string>() ?? throw new InvalidOperationException($"no task id in {text}");

        var registry = suite.Registry(Keys.DefaultWorker);
        var worker = (await registry.RegisterWorkerAsync(new RegisterWorkerRequest
        {
            Name = $"e2e-dashboard-{Guid.NewGuid():N}", Type = WorkerType.Standalone, Capabilities = { TaskType },
        }, Traced())).Worker;
        try
        {
            var queue = suite.Queue(Keys.DefaultWorker);
            var leased = await EventuallyAsync(async () =>
            {
                var lease = await queue.LeaseTasksAsync(new LeaseTasksRequest
                {
                    WorkerId = worker.Id, TaskTypes = { TaskType }, MaxTasks = 1, Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)),
                }, Traced());
                return lease.Tasks.SingleOrDefault(t => t.Id == taskId);
            }, UiTimeout, () => Task.FromResult($"task {taskId} to be leased"));
            await queue.StartTaskAsync(new StartTaskRequest { TaskId = taskId, FencingToken = leased.FencingToken }, Traced());
            await queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = taskId, FencingToken = leased.FencingToken, Result = """{"ok":true}""" }, Traced());
        }
        finally
        {
            await registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id }, Traced());
        }

        Assert.Equal(TaskStatus.Completed, (await suite.GetTaskAsync(taskId)).Status);
        return taskId;
    }

    private static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, Func<Task<string>> what) where T : class
    {
        var stopwatch = Stopwatch.StartNew();
        Exception? last = null;
        while (stopwatch.Elapsed < timeout)
        {
            try
            {
                if (await probe() is { } value)
                {
                    return value;
                }
            }
            catch (Exception ex) when (ex is RpcException or PlaywrightException or TimeoutException)
            {
                last = ex;
            }

            await Task.Delay(1000);
        }

        var description = await what();
        throw new TimeoutException(string.Create(CultureInfo.InvariantCulture,
            $"timed out after {timeout.TotalSeconds:0} s waiting for {description} (last error: {last?.Message})"));
    }
}

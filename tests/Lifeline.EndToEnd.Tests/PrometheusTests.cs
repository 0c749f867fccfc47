using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Lifeline.EndToEnd.Tests.Suite;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// What an operator's Prometheus sees of the AppHost-started suite: each service answers <c>/metrics</c> over HTTP/1.1
/// on the loopback port the AppHost gave it (the port the scrape configuration in services/Lifeline.ServiceDefaults/README.md names), with the service's own
/// meters in it (and no password in any label), and a task enqueued through the gateway shows up in the queue's counter.
/// </summary>
[Collection(SuiteCollection.Name)]
public sealed partial class PrometheusTests(SuiteFixture suite)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Every_service_serves_its_metrics_to_prometheus_over_http1_and_an_enqueue_is_counted()
    {
        using var http = new HttpClient
        {
            DefaultRequestVersion = HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(20),
        };
        foreach (var service in (string[])["queue", "registry", "checkpoint", "recovery", "backup"])
        {
            // The service's own process: its connection pool to its own database (Npgsql's meter) is in the scrape.
            var scrape = await EventuallyAsync(http, service, text => text.Contains($"Database={service}db", StringComparison.Ordinal));
            Assert.Contains("# TYPE db_client_connection_count gauge", scrape, StringComparison.Ordinal);
            Assert.DoesNotContain("Password=", scrape, StringComparison.OrdinalIgnoreCase);
        }

        var type = $"e2e.prometheus.{Guid.NewGuid():N}"[..30];
        var before = EnqueuedOf(await ScrapeAsync(http, "queue"), type);
        Assert.Equal(0, before);
        await suite.EnqueueOverRestAsync(Keys.DefaultWorker, type, """{"n":1}""");
        await suite.EnqueueOverRestAsync(Keys.DefaultWorker, type, """{"n":2}""");
        var after = await EventuallyAsync(http, "queue", text => EnqueuedOf(text, type) == 2);
        Assert.Equal(2, EnqueuedOf(after, type));
    }

    private async Task<string> ScrapeAsync(HttpClient http, string service)
    {
        using var response = await http.GetAsync(suite.MetricsAddress(service));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{service} {suite.MetricsAddress(service)} answered {(int)response.StatusCode}: {text}");
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType ?? "", StringComparison.Ordinal);
        return text;
    }

    private async Task<string> EventuallyAsync(HttpClient http, string service, Func<string, bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var text = await ScrapeAsync(http, service);
            if (done(text))
            {
                return text;
            }
            Assert.True(clock.Elapsed < Patience, $"{service}'s /metrics did not show what was expected within {Patience.TotalSeconds} s:\n{text[..Math.Min(text.Length, 4000)]}");
            // The exporter caches a scrape for a short while; ask again.
            await Task.Delay(500);
        }
    }

    private static long EnqueuedOf(string scrape, string type) =>
        EnqueuedLine().Matches(scrape).Where(m => m.Groups["labels"].Value.Contains($"\"{type}\"", StringComparison.Ordinal))
            .Sum(m => long.Parse(m.Groups["value"].Value, System.Globalization.CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^lifeline_queue_tasks_enqueued_total\{(?<labels>[^}]*)\} (?<value>\d+)", RegexOptions.Multiline)]
    private static partial Regex EnqueuedLine();
}

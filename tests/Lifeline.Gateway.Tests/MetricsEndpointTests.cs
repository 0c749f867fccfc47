using System.Net;

namespace Lifeline.Gateway.Tests;

/// <summary>The gateway's /metrics: open to a scraper on this host without a credential (before authentication), Prometheus text.</summary>
public sealed class MetricsEndpointTests(GatewayEnvironment env) : IClassFixture<GatewayEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_loopback_scraper_gets_the_gateways_metrics_without_a_credential()
    {
        using var warmUp = await env.Gateway.RestClient.GetAsync("/openapi.json"); // one request measured by ASP.NET Core

        using var response = await env.Gateway.RestClient.GetAsync("/metrics");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE http_server_request_duration_seconds histogram", text);
        Assert.Contains("http_route=\"/openapi.json\"", text);
    }
}

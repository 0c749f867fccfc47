using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Lifeline.ServiceDefaults.Telemetry;

/// <summary>
/// <c>GET /metrics</c> in the Prometheus text format, answered only to callers on the same host (loopback): a
/// scraper runs beside the service (or as a sidecar); from anywhere else the path is not there (404). It runs before
/// the caller-identity check, which guards only Lifeline RPCs. The services' port speaks HTTP/2 only (cleartext), which
/// Prometheus does not scrape: <see cref="ListenerPortSetting"/> adds an HTTP/1.1 listener on 127.0.0.1 for it.
/// </summary>
public static class PrometheusEndpoint
{
    public const string Path = "/metrics";

    /// <summary>
    /// <c>Telemetry:PrometheusPort</c> (<c>Telemetry__PrometheusPort</c>): when set, <c>http://127.0.0.1:&lt;port&gt;/metrics</c>
    /// serves the same metrics over HTTP/1.1, for Prometheus on this host.
    /// </summary>
    public const string ListenerPortSetting = "Telemetry:PrometheusPort";

    public static IApplicationBuilder UsePrometheusOnLoopback(this IApplicationBuilder app) =>
        app.UseOpenTelemetryPrometheusScrapingEndpoint(IsLoopbackScrape);

    /// <summary>A request for <see cref="Path"/> from a loopback address.</summary>
    public static bool IsLoopbackScrape(HttpContext context) =>
        context.Request.Path.Equals(Path, StringComparison.Ordinal)
        && context.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote);
}

using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Lifeline.ServiceDefaults.Telemetry;

/// <summary>
/// <c>GET /metrics</c> in the Prometheus text format, answered only to callers on the same host (loopback): a
/// scraper runs beside the service (or as a sidecar); from anywhere else the path is not there (404). It runs before
/// the caller-identity check, which guards only Lifeline RPCs.
/// </summary>
public static class PrometheusEndpoint
{
    public const string Path = "/metrics";

    public static IApplicationBuilder UsePrometheusOnLoopback(this IApplicationBuilder app) =>
        app.UseOpenTelemetryPrometheusScrapingEndpoint(IsLoopbackScrape);

    /// <summary>A request for <see cref="Path"/> from a loopback address.</summary>
    public static bool IsLoopbackScrape(HttpContext context) =>
        context.Request.Path.Equals(Path, StringComparison.Ordinal)
        && context.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote);
}

using System.Text.Json;
using Grpc.AspNetCore.HealthChecks;
using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Options;
using Lifeline.Gateway.Routing;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Health;

/// <summary>
/// The suite's health as the gateway sees it, one ASP.NET Core health check per routed service:
/// <c>GET /health</c> (no credential) answers 200 with <c>{"status":"Healthy","services":{"queue":"Healthy",…}}</c>,
/// or 503 when any service is unhealthy; <c>grpc.health.v1.Health/Check</c> answers SERVING only when all are
/// healthy for service "" and per service for its full name (<c>lifeline.queue.v1.QueueService</c>) or short name.
/// </summary>
internal static class HealthEndpoints
{
    public static void AddUpstreamHealthChecks(this IServiceCollection services, ContractCatalog catalog, UpstreamServices upstreams)
    {
        services.AddHttpClient(UpstreamHealthCheck.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                ConnectTimeout = TimeSpan.FromSeconds(2),
                PooledConnectionLifetime = TimeSpan.FromMinutes(1),
            });

        var checks = services.AddGrpcHealthChecks(o =>
        {
            o.Services.Map("", _ => true);
            foreach (var service in catalog.Services.Where(s => upstreams.Addresses.ContainsKey(s.Upstream)))
            {
                var upstream = service.Upstream;
                o.Services.Map(service.FullName, r => r.Name == upstream);
                o.Services.Map(upstream, r => r.Name == upstream);
            }
        });
        foreach (var (name, instances) in upstreams.Addresses)
        {
            checks.Add(new HealthCheckRegistration(
                name,
                sp => ActivatorUtilities.CreateInstance<UpstreamHealthCheck>(sp, name, instances),
                HealthStatus.Unhealthy,
                tags: ["upstream"]));
        }
    }

    public static void MapSuiteHealth(this WebApplication app)
    {
        app.MapHealthChecks("/health", new HealthCheckOptions
        {
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
            ResponseWriter = WriteJsonAsync,
        });
        app.MapGrpcHealthChecksService();
    }

    private static async Task WriteJsonAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        await using var writer = new Utf8JsonWriter(context.Response.Body, new JsonWriterOptions { Indented = true });
        writer.WriteStartObject();
        writer.WriteString("status", report.Status.ToString());
        writer.WriteStartObject("services");
        foreach (var (name, entry) in report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            writer.WriteString(name, entry.Status.ToString());
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
        await writer.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }
}

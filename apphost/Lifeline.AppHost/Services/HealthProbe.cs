using System.Net;
using System.Text.Json;
using Lifeline.AppHost.Supervision;

namespace Lifeline.AppHost.Services;

/// <summary>
/// <c>GET /health</c> over cleartext HTTP/2 with prior knowledge: the services speak only h2c, so the request
/// must not start as HTTP/1.1 and try to upgrade.
/// </summary>
internal sealed class HealthProbe : IDisposable
{
    private readonly HttpClient _client = new(new SocketsHttpHandler
    {
        ConnectTimeout = TimeSpan.FromSeconds(2),
        PooledConnectionLifetime = TimeSpan.FromMinutes(1),
    })
    {
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = Timeout.InfiniteTimeSpan, // the caller's token bounds each probe
    };

    public async Task<HealthResult> CheckAsync(Uri healthUri, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await _client.GetAsync(healthUri, cancellationToken).ConfigureAwait(false);
            var body = StatusOf((await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)).Trim());
            return (response.StatusCode, body) switch
            {
                (HttpStatusCode.OK, "Healthy") => HealthResult.Healthy,
                (HttpStatusCode.OK, "Degraded") => new HealthResult(HealthStatus.Degraded, "Degraded"),
                _ => HealthResult.Unhealthy($"{(int)response.StatusCode} {body}"),
            };
        }
        catch (HttpRequestException ex)
        {
            return HealthResult.Unhealthy(ex.Message);
        }
    }

    public void Dispose() => _client.Dispose();

    /// <summary>Services answer <c>Healthy</c>; the gateway answers <c>{"status":"Healthy","services":{…}}</c>.</summary>
    private static string StatusOf(string body)
    {
        if (!body.StartsWith('{'))
        {
            return body;
        }

        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.TryGetProperty("status", out var status) && status.ValueKind == JsonValueKind.String
                ? status.GetString()!
                : body;
        }
        catch (JsonException)
        {
            return body;
        }
    }
}

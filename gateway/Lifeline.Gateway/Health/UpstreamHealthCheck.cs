using System.Diagnostics;
using System.Net;
using Lifeline.Gateway.Options;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Health;

/// <summary>
/// Asks a service's instances for <c>GET /health</c> over cleartext HTTP/2 with prior knowledge (the services
/// speak only h2c). Healthy when every instance says Healthy, Degraded when some do not, Unhealthy when none
/// does. Answers are reused for <see cref="GatewayOptions.HealthCacheDuration"/>.
/// </summary>
internal sealed partial class UpstreamHealthCheck(
    string service, IReadOnlyList<Uri> instances, IHttpClientFactory clients, IOptions<GatewayOptions> options, ILogger<UpstreamHealthCheck> logger)
    : IHealthCheck
{
    public const string HttpClientName = "lifeline-health";

    private readonly SemaphoreSlim _gate = new(1, 1);
    private HealthCheckResult _last;
    private long _lastAt = long.MinValue;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var cache = options.Value.HealthCacheDuration;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_lastAt != long.MinValue && Stopwatch.GetElapsedTime(_lastAt) < cache)
            {
                return _last;
            }

            var answers = await Task.WhenAll(instances.Select(i => ProbeAsync(i, cancellationToken))).ConfigureAwait(false);
            var healthy = answers.Count(a => a is null);
            _last = healthy == answers.Length
                ? HealthCheckResult.Healthy()
                : healthy > 0
                    ? HealthCheckResult.Degraded(string.Join("; ", answers.Where(a => a is not null)))
                    : HealthCheckResult.Unhealthy(string.Join("; ", answers));
            if (_last.Status != HealthStatus.Healthy)
            {
                LogUnhealthy(logger, service, _last.Status, _last.Description ?? "");
            }

            _lastAt = Stopwatch.GetTimestamp();
            return _last;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <returns>null when healthy, else why not.</returns>
    private async Task<string?> ProbeAsync(Uri instance, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.Value.HealthCheckTimeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(instance, "/health"))
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            using var response = await clients.CreateClient(HttpClientName).SendAsync(request, timeout.Token).ConfigureAwait(false);
            var body = (await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false)).Trim();
            return response.StatusCode == HttpStatusCode.OK && body == "Healthy" ? null : $"{instance}: {(int)response.StatusCode} {body}";
        }
        catch (HttpRequestException ex)
        {
            return $"{instance}: {ex.Message}";
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return $"{instance}: no answer within {options.Value.HealthCheckTimeout.TotalSeconds:0.#} s";
        }
    }

    [LoggerMessage(EventId = 6006, Level = LogLevel.Warning, Message = "Service {Service} is {Status}: {Description}")]
    private static partial void LogUnhealthy(ILogger logger, string service, HealthStatus status, string description);
}

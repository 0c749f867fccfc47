using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace Lifeline.AppHost.Infrastructure;

/// <summary>Healthy when a fresh (unpooled) connection answers <c>SELECT 1</c>.</summary>
internal sealed class PostgresHealthCheck(Func<string> connectionString) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString()) { Pooling = false, Timeout = 3 };
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand("SELECT 1", connection) { CommandTimeout = 3 };
            await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return HealthCheckResult.Healthy();
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or ArgumentException)
        {
            return HealthCheckResult.Unhealthy(ex.Message);
        }
    }
}

/// <summary>Healthy when the first endpoint of a StackExchange.Redis configuration answers <c>PING</c> with <c>+PONG</c>.</summary>
internal sealed class RedisHealthCheck(Func<string> configuration) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var (host, port) = FirstEndpoint(configuration());
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), timeout.Token).ConfigureAwait(false);
            var buffer = new byte[64];
            var read = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
            var answer = Encoding.ASCII.GetString(buffer, 0, read);
            // -NOAUTH: a server with a password answers, which is all "up" means here.
            return answer.StartsWith("+PONG", StringComparison.Ordinal) || answer.StartsWith("-NOAUTH", StringComparison.Ordinal)
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy($"redis at {host}:{port} answered '{answer.Trim()}'");
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"redis at {host}:{port}: {ex.Message}");
        }
    }

    /// <summary>host:port of the first endpoint in a configuration such as <c>host:6379,password=…</c>.</summary>
    public static (string Host, int Port) FirstEndpoint(string configuration)
    {
        var first = configuration.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .FirstOrDefault(part => !part.Contains('=', StringComparison.Ordinal)) ?? "127.0.0.1:6379";
        var colon = first.LastIndexOf(':');
        return colon > 0 && int.TryParse(first[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture, out var port)
            ? (first[..colon], port)
            : (first, 6379);
    }
}

/// <summary>
/// Healthy when a Lifeline service's <c>/health</c> answers 200. The services serve cleartext HTTP/2 only (gRPC), which
/// Aspire's HTTP health check (HTTP/1.1) cannot talk to; the gateway's REST listener is HTTP/1.1.
/// </summary>
internal sealed class ServiceHealthCheck(Func<Uri> baseAddress, Version httpVersion) : IHealthCheck, IDisposable
{
    private readonly HttpClient _client = new() { Timeout = TimeSpan.FromSeconds(5) };

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        Uri address;
        try
        {
            address = new Uri(baseAddress(), "/health");
        }
        catch (InvalidOperationException ex)
        {
            return HealthCheckResult.Unhealthy($"no endpoint yet: {ex.Message}");
        }

        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, address) { Version = httpVersion, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            using var response = await _client.SendAsync(request, cancellationToken).ConfigureAwait(false);
            return response.StatusCode == HttpStatusCode.OK
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy($"{address} answered {(int)response.StatusCode}");
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"{address}: {ex.Message}");
        }
    }

    public void Dispose() => _client.Dispose();
}

using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Lifeline.AppHost.Supervision;

namespace Lifeline.AppHost.Redis;

/// <summary>A raw RESP <c>PING</c>, so the apphost needs no Redis client library.</summary>
internal static class RedisPing
{
    public static async Task<HealthResult> PingAsync(string host, int port, CancellationToken cancellationToken)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(host, port, cancellationToken).ConfigureAwait(false);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
            var buffer = new byte[256];
            var received = 0;
            while (received < buffer.Length && Array.IndexOf(buffer, (byte)'\n', 0, received) < 0)
            {
                var read = await stream.ReadAsync(buffer.AsMemory(received), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                received += read;
            }

            var reply = Encoding.ASCII.GetString(buffer, 0, received).Trim();
            // -NOAUTH: an external Redis with a password the apphost does not use itself; it is up.
            return reply.StartsWith("+PONG", StringComparison.Ordinal) || reply.StartsWith("-NOAUTH", StringComparison.Ordinal)
                ? HealthResult.Healthy
                : HealthResult.Unhealthy(reply.Length == 0 ? "no reply to PING" : reply);
        }
        catch (SocketException ex)
        {
            return HealthResult.Unhealthy(ex.Message);
        }
        catch (IOException ex)
        {
            return HealthResult.Unhealthy(ex.Message);
        }
    }

    /// <summary>The first endpoint of a StackExchange.Redis configuration string (<c>host:port,option=value,…</c>).</summary>
    public static (string Host, int Port) FirstEndpoint(string configuration)
    {
        var endpoint = configuration.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .FirstOrDefault(part => !part.Contains('=', StringComparison.Ordinal))
            ?? throw new AppHostException($"The Redis configuration '{configuration}' names no host:port endpoint.");
        var colon = endpoint.LastIndexOf(':');
        return colon > 0 && int.TryParse(endpoint[(colon + 1)..], CultureInfo.InvariantCulture, out var port)
            ? (endpoint[..colon], port)
            : (endpoint, 6379);
    }
}

using System.Net;
using System.Net.Sockets;

namespace Lifeline.Testing;

/// <summary>Hands out free TCP ports on the loopback interface.</summary>
public static class FreePort
{
    private static readonly HashSet<int> Issued = [];

    /// <summary>
    /// Returns a loopback port that was free a moment ago and has not been handed out before in this
    /// process. Another process may still take it before it is bound, so callers retry on bind failure.
    /// </summary>
    public static int Next()
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            lock (Issued)
            {
                if (Issued.Add(port))
                {
                    return port;
                }
            }
        }

        throw new InvalidOperationException("Could not find a free loopback TCP port after 100 attempts.");
    }
}

using System.Net;
using System.Net.Sockets;

namespace Lifeline.Testing;

/// <summary>
/// A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, Redis, a service), for injecting network
/// faults between a client and that server: drop every connection, black-hole traffic (connections stay
/// open, bytes go nowhere), add latency, or reset connections in the middle of a call. Point the client at
/// <see cref="Port"/> instead of the server's port.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<Link> _links = [];
    private readonly Task _acceptLoop;
    private volatile bool _blackHole;
    private volatile bool _refuse;
    private int _refuseNext;
    private int _accepted;
    private TimeSpan _latency;

    private FaultProxy(TcpListener listener, IPEndPoint target)
    {
        _listener = listener;
        _target = target;
        _acceptLoop = Task.Run(AcceptAsync);
    }

    /// <summary>The loopback port clients connect to.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Connections currently open through the proxy.</summary>
    public int OpenConnections
    {
        get
        {
            lock (_gate)
            {
                return _links.Count;
            }
        }
    }

    /// <summary>Starts a proxy to <paramref name="targetPort"/> on 127.0.0.1.</summary>
    public static FaultProxy Start(int targetPort)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return new FaultProxy(listener, new IPEndPoint(IPAddress.Loopback, targetPort));
    }

    /// <summary>Rewrites a connection string's <c>Port=</c> (Npgsql) to go through this proxy.</summary>
    public string Npgsql(string connectionString) =>
        new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { Port = Port }.ConnectionString;

    /// <summary>
    /// Black-holes traffic while on: open connections stay open but nothing passes either way, and new
    /// connections are accepted and then hang — what a partitioned network or a frozen server looks like.
    /// </summary>
    public void BlackHole(bool on) => _blackHole = on;

    /// <summary>Refuses new connections while on (they are reset as soon as accepted).</summary>
    public void Refuse(bool on) => _refuse = on;

    /// <summary>
    /// Refuses the next <paramref name="connections"/> new connections, then lets them through: a server that comes
    /// up after that many attempts, without depending on how long the attempts take.
    /// </summary>
    public void RefuseNext(int connections) => Volatile.Write(ref _refuseNext, connections);

    /// <summary>Connections accepted so far, refused ones included.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Delays every chunk of bytes in either direction by <paramref name="latency"/>.</summary>
    public void Latency(TimeSpan latency) => _latency = latency;

    /// <summary>Resets (RST) every open connection: a crash of the peer or a broken network mid-call.</summary>
    public void ResetAll()
    {
        List<Link> links;
        lock (_gate)
        {
            links = [.. _links];
            _links.Clear();
        }
        foreach (var link in links)
        {
            link.Reset();
        }
    }

    /// <summary>Resets every connection and refuses new ones for <paramref name="outage"/>, then lets traffic pass again.</summary>
    public async Task OutageAsync(TimeSpan outage, CancellationToken ct = default)
    {
        Refuse(true);
        ResetAll();
        try
        {
            await Task.Delay(outage, ct).ConfigureAwait(false);
        }
        finally
        {
            Refuse(false);
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            Interlocked.Increment(ref _accepted);
            if (_refuse || TakeRefusal())
            {
                client.LingerState = new LingerOption(true, 0);
                client.Close(0);
                continue;
            }
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private bool TakeRefusal()
    {
        var left = Volatile.Read(ref _refuseNext);
        while (left > 0)
        {
            var seen = Interlocked.CompareExchange(ref _refuseNext, left - 1, left);
            if (seen == left)
            {
                return true;
            }
            left = seen;
        }
        return false;
    }

    private async Task ServeAsync(Socket client)
    {
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        try
        {
            using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            connectTimeout.CancelAfter(TimeSpan.FromSeconds(10));
            await server.ConnectAsync(_target, connectTimeout.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            client.LingerState = new LingerOption(true, 0);
            client.Close(0);
            server.Dispose();
            return;
        }
        var link = new Link(client, server);
        lock (_gate)
        {
            _links.Add(link);
        }
        try
        {
            await Task.WhenAny(PumpAsync(client, server, link.Token), PumpAsync(server, client, link.Token)).ConfigureAwait(false);
        }
        finally
        {
            lock (_gate)
            {
                _links.Remove(link);
            }
            link.Close();
        }
    }

    private async Task PumpAsync(Socket from, Socket to, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
                if (read == 0)
                {
                    return;
                }
                while (_blackHole && !ct.IsCancellationRequested)
                {
                    await Task.Delay(50, ct).ConfigureAwait(false);
                }
                var latency = _latency;
                if (latency > TimeSpan.Zero)
                {
                    await Task.Delay(latency, ct).ConfigureAwait(false);
                }
                var sent = 0;
                while (sent < read)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None, ct).ConfigureAwait(false);
                }
            }
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        ResetAll();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }
        _stop.Dispose();
    }

    /// <summary>One proxied connection: the client's socket and ours to the server.</summary>
    private sealed class Link(Socket client, Socket server)
    {
        private readonly CancellationTokenSource _cts = new();
        private int _closed;

        public CancellationToken Token => _cts.Token;

        public void Reset()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                _cts.Cancel();
                foreach (var socket in new[] { client, server })
                {
                    try
                    {
                        socket.LingerState = new LingerOption(true, 0); // close with RST, not FIN
                        socket.Close(0);
                    }
                    catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                    {
                    }
                }
            }
        }

        public void Close()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                _cts.Cancel();
                client.Dispose();
                server.Dispose();
            }
        }
    }
}

using Lifeline.Processes;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Lifeline.Testing.Internal;

namespace Lifeline.Testing;

/// <summary>
/// A private redis-server on a free loopback port, without persistence. Each <see cref="StartAsync"/>
/// starts a new one (they are cheap), so test classes never share Redis state. Dispose kills it; any
/// left running when the process exits are killed then, and ones a crashed run left behind are
/// removed by the next run.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private const string DirectoryPrefix = "lifeline-redis-";
    private const string PidFileName = "redis.pid";
    private const int SigStop = 19; // Linux
    private const int SigCont = 18;
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);
    private static readonly ConcurrentDictionary<RedisServer, byte> Running = new();
    private static readonly SemaphoreSlim InstallGate = new(1, 1);
    private static int s_processExitHooked;
    private static int s_orphansRemoved;

    private readonly string _executable;
    private readonly string _directory;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Process? _process;
    private OutputLog _log = new();
    private bool _disposed;

    private RedisServer(string executable, string directory, int port)
    {
        _executable = executable;
        _directory = directory;
        Port = port;
    }

    /// <summary>The loopback port; it stays the same across <see cref="RestartAsync"/>.</summary>
    public int Port { get; }

    /// <summary>StackExchange.Redis configuration string, e.g. <c>127.0.0.1:PORT,abortConnect=false</c>.</summary>
    public string ConnectionString => $"127.0.0.1:{Port},abortConnect=false";

    /// <summary>True between a successful start and <see cref="StopAsync"/> or dispose.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Starts a new redis-server and returns once it answers PING.</summary>
    public static async Task<RedisServer> StartAsync()
    {
        var executable = await FindOrInstallExecutableAsync().ConfigureAwait(false);
        if (Interlocked.Exchange(ref s_orphansRemoved, 1) == 0)
        {
            RemoveOrphanedServers();
        }

        if (Interlocked.Exchange(ref s_processExitHooked, 1) == 0)
        {
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                foreach (var server in Running.Keys)
                {
                    server.Kill(deleteDirectory: true);
                }
            };
        }

        CleanupWatchdog.EnsureStarted();
        for (var attempt = 1; ; attempt++)
        {
            var directory = Path.Combine(Path.GetTempPath(), DirectoryPrefix + Guid.NewGuid().ToString("N")[..12]);
            Directory.CreateDirectory(directory);
            OwnerMarker.Write(directory);
            var server = new RedisServer(executable, directory, FreePort.Next());
            Running.TryAdd(server, 0);
            try
            {
                if (await server.TryStartProcessAsync().ConfigureAwait(false))
                {
                    return server;
                }
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            // The port was taken between choosing and binding it: try another.
            var tail = server._log.Tail();
            await server.DisposeAsync().ConfigureAwait(false);
            if (attempt >= 5)
            {
                throw new InvalidOperationException($"redis-server could not bind a free loopback port after {attempt} attempts. Log tail:\n{tail}");
            }
        }
    }

    /// <summary>Kills the server (as a crash would); its data is gone. The port stays reserved for <see cref="RestartAsync"/>.</summary>
    public async Task StopAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            Kill(deleteDirectory: false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Freezes the server (SIGSTOP), as a hung or cut-off Redis looks to its clients: connections stay open and nothing
    /// answers. Its data stays, and its keys' time to live keeps running. <see cref="ResumeAsync"/> thaws it.
    /// </summary>
    public Task PauseAsync() => SignalAsync(SigStop);

    /// <summary>Thaws a server frozen by <see cref="PauseAsync"/> (SIGCONT): it answers again, keys whose time ran out are gone.</summary>
    public Task ResumeAsync() => SignalAsync(SigCont);

    private async Task SignalAsync(int signal)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_process is not { HasExited: false } process || !UnixProcess.Signal(process.Id, signal))
            {
                throw new InvalidOperationException($"redis-server on port {Port} is not running.");
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops the server if it runs and starts an empty one on the same port.</summary>
    public async Task RestartAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Kill(deleteDirectory: false);

            // The port may briefly be held by another process's outgoing connection; keep trying it.
            var deadline = Stopwatch.StartNew();
            while (!await TryStartProcessAsync().ConfigureAwait(false))
            {
                if (deadline.Elapsed > TimeSpan.FromSeconds(15))
                {
                    throw new InvalidOperationException(
                        $"redis-server could not bind 127.0.0.1:{Port} again within 15 s. Log tail:\n{_log.Tail()}");
                }

                await Task.Delay(200).ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Kills the server and deletes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _disposed = true;
            Kill(deleteDirectory: true);
            Running.TryRemove(this, out _);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Starts redis-server on <see cref="Port"/>; false if the port was in use.</summary>
    private async Task<bool> TryStartProcessAsync()
    {
        _log = new OutputLog(filePath: Path.Combine(_directory, "redis.log"));
        string[] arguments =
        [
            "--port", Port.ToString(CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", _directory,
            "--logfile", "",
        ];
        var process = ChildProcess.Start(ChildProcess.StartInfo(_executable, arguments, _directory), _log);
        _process = process;
        await File.WriteAllTextAsync(Path.Combine(_directory, PidFileName), process.Id.ToString(CultureInfo.InvariantCulture))
            .ConfigureAwait(false);

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                if (_log.Contains("Address already in use"))
                {
                    Kill(deleteDirectory: false);
                    return false;
                }

                throw new InvalidOperationException(
                    $"redis-server exited with code {process.ExitCode} before answering PING on 127.0.0.1:{Port}. Log tail:\n{_log.Tail()}");
            }

            if (await AnswersPingAsync(Port).ConfigureAwait(false))
            {
                return true;
            }

            if (deadline.Elapsed > ReadyTimeout)
            {
                var tail = _log.Tail();
                Kill(deleteDirectory: false);
                throw new TimeoutException(
                    $"redis-server did not answer PING on 127.0.0.1:{Port} within {ReadyTimeout.TotalSeconds:0} s. Log tail:\n{tail}");
            }

            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    private void Kill(bool deleteDirectory)
    {
        var process = Interlocked.Exchange(ref _process, null);
        if (process is not null)
        {
            ChildProcess.KillQuietly(process, entireProcessTree: false);
            process.Dispose();
        }

        if (deleteDirectory)
        {
            OwnerMarker.DeleteDirectory(_directory);
        }
    }

    private static async Task<bool> AnswersPingAsync(int port)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token).ConfigureAwait(false);
            await socket.SendAsync("PING\r\n"u8.ToArray(), SocketFlags.None, timeout.Token).ConfigureAwait(false);
            var buffer = new byte[64];
            var received = 0;
            while (received < 7)
            {
                var read = await socket.ReceiveAsync(buffer.AsMemory(received), SocketFlags.None, timeout.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                received += read;
            }

            return Encoding.ASCII.GetString(buffer, 0, received).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static void RemoveOrphanedServers()
    {
        foreach (var orphan in OwnerMarker.FindOrphans(Path.GetTempPath(), DirectoryPrefix + "*"))
        {
            try
            {
                var pidFile = Path.Combine(orphan, PidFileName);
                if (File.Exists(pidFile)
                    && int.TryParse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture, out var pid)
                    && UnixProcess.IsAlive(pid)
                    && UnixProcess.CommandLine(pid).Contains("redis-server", StringComparison.Ordinal))
                {
                    UnixProcess.Signal(pid, UnixProcess.SigKill);
                    UnixProcess.WaitForExit(pid, TimeSpan.FromSeconds(5));
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }

            OwnerMarker.DeleteDirectory(orphan);
        }
    }

    private static async Task<string> FindOrInstallExecutableAsync()
    {
        var found = FindExecutable();
        if (found is not null)
        {
            return found;
        }

        if (!UnixProcess.IsRoot)
        {
            throw new InvalidOperationException(
                "redis-server was not found on PATH, /usr/bin or /usr/local/bin (or $LIFELINE_REDIS_SERVER). " +
                "Run build/setup.sh or `sudo apt-get install -y redis-server`.");
        }

        await InstallGate.WaitAsync().ConfigureAwait(false);
        try
        {
            found = FindExecutable();
            if (found is not null)
            {
                return found;
            }

            foreach (var arguments in new[]
                     {
                         new[] { "-o", "DPkg::Lock::Timeout=300", "update" },
                         new[] { "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", "redis-server" },
                     })
            {
                var startInfo = ChildProcess.StartInfo("apt-get", arguments);
                startInfo.Environment["DEBIAN_FRONTEND"] = "noninteractive";
                var (exitCode, output) = await ChildProcess.RunAsync(startInfo, TimeSpan.FromMinutes(10)).ConfigureAwait(false);
                if (exitCode != 0)
                {
                    throw new InvalidOperationException(
                        $"redis-server is missing and '{ChildProcess.Describe(startInfo)}' failed with exit code {exitCode}:\n{output}");
                }
            }

            return FindExecutable()
                ?? throw new InvalidOperationException("apt-get installed redis-server, but no redis-server executable was found afterwards.");
        }
        finally
        {
            InstallGate.Release();
        }
    }

    private static string? FindExecutable()
    {
        var configured = Environment.GetEnvironmentVariable("LIFELINE_REDIS_SERVER");
        if (!string.IsNullOrEmpty(configured))
        {
            return File.Exists(configured)
                ? configured
                : throw new InvalidOperationException($"LIFELINE_REDIS_SERVER points to '{configured}', which does not exist.");
        }

        return (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/local/bin", "/usr/sbin"])
            .Select(directory => Path.Combine(directory, "redis-server"))
            .FirstOrDefault(File.Exists);
    }
}

using Lifeline.Processes;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Lifeline.Testing.Internal;
using Npgsql;

namespace Lifeline.Testing;

/// <summary>
/// A throw-away PostgreSQL cluster that listens on 127.0.0.1 only and is stopped and deleted when the
/// process exits. <see cref="GetAsync"/> gives the one shared by every test in the process, started on
/// first use with <see cref="PostgresSettings.ForTests"/> (durability traded for speed); tests get
/// isolation from <see cref="CreateDatabaseAsync"/>: one database each. <see cref="StartDedicatedAsync"/>
/// starts a private cluster with other settings, e.g. <see cref="PostgresSettings.Durable"/> for benchmarks.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    private const string DirectoryPrefix = "lifeline-pg-";
    private const string OsUser = "postgres";
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);
    private static readonly Lazy<Task<PostgresServer>> Shared =
        new(() => Task.Run(() => StartAsync(PostgresSettings.ForTests)), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly string _rootDirectory;
    private readonly string _dataDirectory;
    private readonly PostgresSettings _settings;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Process _process;
    private OutputLog _log;
    private int _stopped;
    private bool _dedicated;

    private PostgresServer(string binDirectory, string rootDirectory, int port, PostgresSettings settings, Process process, OutputLog log)
    {
        BinDirectory = binDirectory;
        _rootDirectory = rootDirectory;
        _dataDirectory = Path.Combine(rootDirectory, "data");
        Port = port;
        _settings = settings;
        _process = process;
        _log = log;
        AdminConnectionString = BuildConnectionString("postgres", maxPoolSize: 20);
    }

    /// <summary>Always 127.0.0.1.</summary>
    public string Host => "127.0.0.1";

    /// <summary>The TCP port the cluster listens on.</summary>
    public int Port { get; }

    /// <summary>Directory of the server binaries (pg_dump, pg_restore, psql … for backup tests).</summary>
    public string BinDirectory { get; }

    /// <summary>Superuser <c>postgres</c> connected to the <c>postgres</c> database.</summary>
    public string AdminConnectionString { get; }

    /// <summary>
    /// The process-wide cluster, started on the first call. Concurrent callers share one start; a failed
    /// start is reported to every caller rather than retried.
    /// </summary>
    public static Task<PostgresServer> GetAsync() => Shared.Value;

    /// <summary>
    /// Starts a new cluster of its own with <paramref name="settings"/>, for callers that must not share
    /// the test cluster or its settings. Dispose stops it; otherwise it stops when the process exits.
    /// </summary>
    public static async Task<PostgresServer> StartDedicatedAsync(PostgresSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var server = await StartAsync(settings).ConfigureAwait(false);
        server._dedicated = true;
        return server;
    }

    /// <summary>
    /// Stops a cluster from <see cref="StartDedicatedAsync"/> and deletes its files. The shared cluster is
    /// left running: other tests use it, and it stops when the process exits.
    /// </summary>
    public ValueTask DisposeAsync()
    {
        if (_dedicated)
        {
            Stop();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Crashes a cluster from <see cref="StartDedicatedAsync"/> as a power cut would crash the server: SIGKILL to the
    /// postmaster and every backend at once, nothing shut down or flushed by PostgreSQL. Connections break; new ones
    /// are refused until <see cref="RestartAsync"/>. The data directory and the port stay.
    /// </summary>
    public async Task CrashAsync()
    {
        ThrowIfShared();
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (ReadPostmasterPid(_dataDirectory) is not { } postmaster || !UnixProcess.IsAlive(postmaster))
            {
                return;
            }

            var backends = ChildrenOf(postmaster);
            // The postmaster first, so its parent (this process, or runuser) is still there to reap it: a postmaster
            // left a zombie would still "hold" the data directory's lock file when the cluster restarts.
            UnixProcess.Signal(postmaster, UnixProcess.SigKill);
            foreach (var backend in backends)
            {
                UnixProcess.Signal(backend, UnixProcess.SigKill);
            }

            using (var reaped = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                await _process.WaitForExitAsync(reaped.Token).ConfigureAwait(false);
            }

            foreach (var backend in backends)
            {
                await UnixProcess.WaitForExitAsync(backend, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private static List<int> ChildrenOf(int parent)
    {
        var children = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                // /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces, so read after the last ')'.
                var stat = File.ReadAllText(Path.Combine(directory, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 1 && int.TryParse(fields[1], CultureInfo.InvariantCulture, out var ppid) && ppid == parent)
                {
                    children.Add(pid);
                }
            }
            catch (IOException)
            {
                // gone meanwhile
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return children;
    }

    /// <summary>
    /// Starts a crashed (or running) cluster from <see cref="StartDedicatedAsync"/> again on the same data directory and
    /// port, and waits until it accepts connections (after its crash recovery replayed the WAL). Connections pooled
    /// before the crash are broken: a pool other than the admin one fails on their first use, as a service's would.
    /// </summary>
    public async Task RestartAsync()
    {
        ThrowIfShared();
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            ChildProcess.KillQuietly(_process, entireProcessTree: true);
            _process.Dispose();
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                _log = new OutputLog(filePath: Path.Combine(_rootDirectory, "postgres.log"));
                _process = ChildProcess.Start(
                    AsServerUser(Path.Combine(BinDirectory, "postgres"), ServerArguments(_rootDirectory, Port, _settings), _rootDirectory), _log);
                if (await WaitUntilReadyAsync(this).ConfigureAwait(false))
                {
                    // Pooled admin connections died with the old server; callers' own pools are theirs to deal with.
                    using var admin = new NpgsqlConnection(AdminConnectionString);
                    NpgsqlConnection.ClearPool(admin);
                    return;
                }
                // The port was taken meanwhile (a client's outgoing connection): it frees up again soon.
                if (deadline.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new InvalidOperationException($"PostgreSQL could not bind 127.0.0.1:{Port} again within 30 s. Server log tail:\n{_log.Tail()}");
                }
                await Task.Delay(200).ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private void ThrowIfShared()
    {
        if (!_dedicated)
        {
            throw new InvalidOperationException("Only a cluster from StartDedicatedAsync may be crashed or restarted: other tests share this one.");
        }
    }

    /// <summary>
    /// Creates an empty database named <c>{prefix}_{random}</c> (lowercased, reduced to a safe identifier)
    /// and returns a connection string for it as the superuser.
    /// </summary>
    public async Task<string> CreateDatabaseAsync(string namePrefix, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(namePrefix);
        var name = $"{SafeIdentifier(namePrefix)}_{Guid.NewGuid().ToString("N")[..12]}";
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await ExecuteAdminAsync($"CREATE DATABASE {QuoteIdentifier(name)}", ct).ConfigureAwait(false);
                break;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ObjectInUse && attempt < 10)
            {
                // "source database template1 is being accessed by other users": someone is briefly connected to it.
                await Task.Delay(100 * attempt, ct).ConfigureAwait(false);
            }
        }

        return BuildConnectionString(name, maxPoolSize: 100);
    }

    /// <summary>Drops the database named in <paramref name="connectionString"/>, disconnecting its sessions first.</summary>
    public async Task DropDatabaseAsync(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var name = builder.Database;
        if (string.IsNullOrEmpty(name) || name is "postgres" or "template0" or "template1")
        {
            throw new ArgumentException($"Refusing to drop database '{name}'.", nameof(connectionString));
        }

        using (var connection = new NpgsqlConnection(connectionString))
        {
            NpgsqlConnection.ClearPool(connection);
        }

        await ExecuteAdminAsync($"DROP DATABASE IF EXISTS {QuoteIdentifier(name)} WITH (FORCE)", CancellationToken.None)
            .ConfigureAwait(false);
    }

    private string BuildConnectionString(string database, int maxPoolSize) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = Host,
            Port = Port,
            Username = "postgres",
            Database = database,
            IncludeErrorDetail = true,
            MaxPoolSize = maxPoolSize,
        }.ConnectionString;

    private async Task ExecuteAdminAsync(string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(AdminConnectionString);
        await connection.OpenAsync(ct).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    private static async Task<PostgresServer> StartAsync(PostgresSettings settings)
    {
        var binDirectory = FindBinDirectory();
        RemoveOrphanedClusters();

        // /tmp rather than $TMPDIR: the postgres OS user must reach it, and the socket path has a ~100 byte limit.
        var tempRoot = Directory.Exists("/tmp") ? "/tmp" : Path.GetTempPath();
        CleanupWatchdog.EnsureStarted();
        var rootDirectory = Path.Combine(tempRoot, DirectoryPrefix + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(rootDirectory);
        OwnerMarker.Write(rootDirectory);
        try
        {
            if (UnixProcess.IsRoot)
            {
                await RunCheckedAsync(ChildProcess.StartInfo("chown", [$"{OsUser}:{OsUser}", rootDirectory]), TimeSpan.FromSeconds(30))
                    .ConfigureAwait(false);
            }

            var dataDirectory = Path.Combine(rootDirectory, "data");
            await RunCheckedAsync(
                    AsServerUser(
                        Path.Combine(binDirectory, "initdb"),
                        ["-D", dataDirectory, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                        rootDirectory),
                    TimeSpan.FromMinutes(2))
                .ConfigureAwait(false);

            PostgresServer? server = null;
            for (var attempt = 1; server is null; attempt++)
            {
                server = await TryStartClusterAsync(binDirectory, rootDirectory, settings, attempt).ConfigureAwait(false);
            }

            AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Stop();
            return server;
        }
        catch
        {
            OwnerMarker.DeleteDirectory(rootDirectory);
            throw;
        }
    }

    /// <summary>Starts postgres on a fresh port; null when the port was taken meanwhile (caller retries).</summary>
    private static async Task<PostgresServer?> TryStartClusterAsync(
        string binDirectory, string rootDirectory, PostgresSettings settings, int attempt)
    {
        var port = FreePort.Next();
        var log = new OutputLog(filePath: Path.Combine(rootDirectory, "postgres.log"));
        var process = ChildProcess.Start(AsServerUser(Path.Combine(binDirectory, "postgres"), ServerArguments(rootDirectory, port, settings), rootDirectory), log);
        var server = new PostgresServer(binDirectory, rootDirectory, port, settings, process, log);
        if (await WaitUntilReadyAsync(server).ConfigureAwait(false))
        {
            return server;
        }

        server.Stop(deleteDirectory: false);
        if (attempt < 5)
        {
            return null;
        }

        throw new InvalidOperationException(
            $"PostgreSQL could not bind 127.0.0.1:{port}. Data directory {server._dataDirectory}. Server log tail:\n{log.Tail()}");
    }

    private static string[] ServerArguments(string rootDirectory, int port, PostgresSettings settings) =>
    [
        "-D", Path.Combine(rootDirectory, "data"),
        "-p", port.ToString(CultureInfo.InvariantCulture),
        "-c", "listen_addresses=127.0.0.1",
        "-c", $"unix_socket_directories={rootDirectory}",
        "-c", "max_connections=400",
        "-c", "logging_collector=off",
        // Logical decoding for the backup service's incremental and differential backups.
        "-c", "wal_level=logical",
        "-c", "max_replication_slots=64",
        "-c", "max_wal_senders=64",
        .. settings.ServerArguments(),
    ];

    /// <summary>
    /// Waits until the server's current process accepts connections; false when it exited because its port was taken
    /// (the caller tries again). Any other early exit, or no answer within <see cref="ReadyTimeout"/>, throws.
    /// </summary>
    private static async Task<bool> WaitUntilReadyAsync(PostgresServer server)
    {
        var process = server._process;
        var log = server._log;
        var readyConnectionString = new NpgsqlConnectionStringBuilder(server.AdminConnectionString)
        {
            Pooling = false,
            Timeout = 2,
        }.ConnectionString;
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                if (log.Contains("could not bind"))
                {
                    return false;
                }

                var exitCode = process.ExitCode;
                server.Stop(deleteDirectory: false);
                throw new InvalidOperationException(
                    $"PostgreSQL exited with code {exitCode} before accepting connections on 127.0.0.1:{server.Port}. " +
                    $"Data directory {server._dataDirectory}. Server log tail:\n{log.Tail()}");
            }

            try
            {
                await using var connection = new NpgsqlConnection(readyConnectionString);
                await connection.OpenAsync().ConfigureAwait(false);
                return true;
            }
            catch (NpgsqlException)
            {
                // Not listening yet, or "the database system is starting up" (or recovering from a crash).
            }

            if (deadline.Elapsed > ReadyTimeout)
            {
                var tail = log.Tail();
                server.Stop(deleteDirectory: false);
                throw new TimeoutException(
                    $"PostgreSQL did not accept connections on 127.0.0.1:{server.Port} within {ReadyTimeout.TotalSeconds:0} s. " +
                    $"Data directory {server._dataDirectory}. Server log tail:\n{tail}");
            }

            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>Immediate shutdown (SIGQUIT to the postmaster), then the temp directory goes.</summary>
    private void Stop(bool deleteDirectory = true)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            StopPostmaster(_dataDirectory);
            ChildProcess.KillQuietly(_process);
            _process.Dispose();
        }

        if (deleteDirectory)
        {
            OwnerMarker.DeleteDirectory(_rootDirectory);
        }
    }

    private static void StopPostmaster(string dataDirectory)
    {
        var pid = ReadPostmasterPid(dataDirectory);
        if (pid is null || !UnixProcess.IsAlive(pid.Value) || !UnixProcess.CommandLine(pid.Value).Contains("postgres", StringComparison.Ordinal))
        {
            return;
        }

        UnixProcess.Signal(pid.Value, UnixProcess.SigQuit);
        if (!UnixProcess.WaitForExit(pid.Value, TimeSpan.FromSeconds(10)))
        {
            UnixProcess.Signal(pid.Value, UnixProcess.SigKill);
            UnixProcess.WaitForExit(pid.Value, TimeSpan.FromSeconds(5));
        }
    }

    private static int? ReadPostmasterPid(string dataDirectory)
    {
        try
        {
            var firstLine = File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).FirstOrDefault();
            return int.TryParse(firstLine, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Kills and deletes clusters left behind by test processes that died without cleaning up.</summary>
    private static void RemoveOrphanedClusters()
    {
        var roots = new HashSet<string>(StringComparer.Ordinal) { "/tmp", Path.GetTempPath().TrimEnd('/') };
        foreach (var orphan in roots.SelectMany(root => OwnerMarker.FindOrphans(root, DirectoryPrefix + "*")))
        {
            StopPostmaster(Path.Combine(orphan, "data"));
            OwnerMarker.DeleteDirectory(orphan);
        }
    }

    /// <summary>PostgreSQL refuses to run as root, so as root the server tools run as the postgres OS user.</summary>
    private static ProcessStartInfo AsServerUser(string executable, IEnumerable<string> arguments, string workingDirectory)
    {
        if (!UnixProcess.IsRoot)
        {
            return ChildProcess.StartInfo(executable, arguments, workingDirectory);
        }

        var runuser = File.Exists("/usr/sbin/runuser") ? "/usr/sbin/runuser" : "runuser";
        return ChildProcess.StartInfo(runuser, ["-u", OsUser, "--", executable, .. arguments], workingDirectory);
    }

    private static async Task RunCheckedAsync(ProcessStartInfo startInfo, TimeSpan timeout)
    {
        var (exitCode, output) = await ChildProcess.RunAsync(startInfo, timeout).ConfigureAwait(false);
        if (exitCode != 0)
        {
            throw new InvalidOperationException(
                $"'{ChildProcess.Describe(startInfo)}' failed with exit code {exitCode}:\n{output}");
        }
    }

    private static string FindBinDirectory()
    {
        static bool HasServer(string? directory) =>
            !string.IsNullOrEmpty(directory) && File.Exists(Path.Combine(directory, "postgres")) && File.Exists(Path.Combine(directory, "initdb"));

        var candidates = new List<string?>
        {
            Environment.GetEnvironmentVariable("LIFELINE_PG_BINDIR"),
            "/usr/lib/postgresql/15/bin",
            PgConfigBinDirectory(),
        };
        if (Directory.Exists("/usr/lib/postgresql"))
        {
            candidates.AddRange(Directory.GetDirectories("/usr/lib/postgresql")
                .OrderByDescending(d => int.TryParse(Path.GetFileName(d), CultureInfo.InvariantCulture, out var v) ? v : 0)
                .Select(d => Path.Combine(d, "bin")));
        }

        candidates.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries));

        return candidates.FirstOrDefault(HasServer)
            ?? throw new InvalidOperationException(
                "PostgreSQL server binaries (postgres, initdb) were not found in $LIFELINE_PG_BINDIR, /usr/lib/postgresql/15/bin, " +
                "`pg_config --bindir` or PATH. Run build/setup.sh (Debian: apt-get install postgresql-15).");
    }

    private static string? PgConfigBinDirectory()
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("pg_config", "--bindir")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            });
            if (process is null)
            {
                return null;
            }

            var errors = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit();
            _ = errors.Result;
            return process.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    private static string SafeIdentifier(string prefix)
    {
        var builder = new StringBuilder();
        foreach (var c in prefix.ToLowerInvariant())
        {
            var safe = c is (>= 'a' and <= 'z') or (>= '0' and <= '9') ? c : '_';
            if (safe != '_' || (builder.Length > 0 && builder[^1] != '_'))
            {
                builder.Append(safe);
            }
        }

        var identifier = builder.ToString().Trim('_');
        if (identifier.Length == 0 || char.IsDigit(identifier[0]))
        {
            identifier = "db_" + identifier;
        }

        return identifier.Length > 40 ? identifier[..40].TrimEnd('_') : identifier;
    }

    private static string QuoteIdentifier(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}

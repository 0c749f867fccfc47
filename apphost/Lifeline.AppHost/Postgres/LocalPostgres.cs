using Lifeline.Processes;
using System.Diagnostics;
using System.Globalization;
using Lifeline.AppHost.Processes;
using Lifeline.AppHost.Supervision;
using Npgsql;

namespace Lifeline.AppHost.Postgres;

/// <summary>
/// A PostgreSQL 15 cluster in <c>.lifeline/postgres/data</c>: initialised on first run, kept across runs, listening
/// on 127.0.0.1 only (no Unix socket) with PostgreSQL's crash-safe defaults (fsync, synchronous_commit and
/// full_page_writes on) and SCRAM passwords. As root, everything runs as the <c>postgres</c> OS user, which
/// owns the directory, because PostgreSQL refuses to run as root.
/// </summary>
internal sealed class LocalPostgres : IManagedResource
{
    private const string OsUser = "postgres";
    private const string Superuser = "postgres";
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(60);

    private readonly string _rootDirectory;
    private readonly string _dataDirectory;
    private readonly int _port;
    private readonly string _superuserPassword;
    private string? _binDirectory;

    public LocalPostgres(string rootDirectory, int port, string superuserPassword)
    {
        _rootDirectory = rootDirectory;
        _dataDirectory = Path.Combine(rootDirectory, "data");
        _port = port;
        _superuserPassword = superuserPassword;
        AdminConnectionString = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port,
            Username = Superuser,
            Password = superuserPassword,
            Database = "postgres",
        }.ConnectionString;
    }

    public string Name => "postgres";

    public string Url => $"postgres://127.0.0.1:{_port}";

    public IReadOnlyList<int> Ports => [_port];

    public string AdminConnectionString { get; }

    /// <summary>True when the data directory holds a cluster (so its superuser password must already be known).</summary>
    public static bool IsInitialized(string rootDirectory) => File.Exists(Path.Combine(rootDirectory, "data", "PG_VERSION"));

    public async Task StopLeftoverAsync(Action<string> report)
    {
        var pid = PostmasterPid();
        if (pid is null || !UnixProcess.IsAlive(pid.Value) || !UnixProcess.CommandLine(pid.Value).Contains("postgres", StringComparison.Ordinal))
        {
            return;
        }

        report($"stopping the PostgreSQL (pid {pid}) an earlier apphost left running on {_dataDirectory}");
        _binDirectory ??= await FindBinDirectoryAsync().ConfigureAwait(false);
        await ProcessLauncher.RunCheckedAsync(PgCtlStop(), StopTimeout + TimeSpan.FromSeconds(10)).ConfigureAwait(false);
    }

    public async Task PrepareAsync(Action<string> report, CancellationToken cancellationToken)
    {
        _binDirectory ??= await FindBinDirectoryAsync().ConfigureAwait(false);
        Directory.CreateDirectory(_rootDirectory);
        if (UnixProcess.IsRoot)
        {
            await ProcessLauncher.RunCheckedAsync(
                ProcessLauncher.Describe("chown", [$"{OsUser}:{OsUser}", _rootDirectory], _rootDirectory), TimeSpan.FromSeconds(30))
                .ConfigureAwait(false);
            var (canWrite, _) = await ProcessLauncher.RunAsync(
                ProcessLauncher.Describe(ProcessLauncher.FindExecutable("test", "/usr/bin/test") ?? "test", ["-w", _rootDirectory, "-a", "-x", _rootDirectory], "/", runAs: OsUser), TimeSpan.FromSeconds(30))
                .ConfigureAwait(false);
            if (canWrite != 0)
            {
                throw new AppHostException(
                    $"The '{OsUser}' OS user cannot reach {_rootDirectory} (a parent directory is not searchable by others?). " +
                    "Pass --data-dir with a directory it can reach, e.g. under /var/tmp.");
            }
        }

        File.SetUnixFileMode(_rootDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (IsInitialized(_rootDirectory))
        {
            return;
        }

        if (Directory.Exists(_dataDirectory) && Directory.EnumerateFileSystemEntries(_dataDirectory).Any())
        {
            throw new AppHostException($"{_dataDirectory} is not empty but holds no PostgreSQL cluster (no PG_VERSION); delete it to start afresh.");
        }

        // initdb reads the superuser's password from a file the server's OS user can read; it goes right after.
        var passwordFile = Path.Combine(_rootDirectory, "initdb.pw");
        await File.WriteAllTextAsync(passwordFile, _superuserPassword + "\n", cancellationToken).ConfigureAwait(false);
        File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        try
        {
            if (UnixProcess.IsRoot)
            {
                await ProcessLauncher.RunCheckedAsync(
                    ProcessLauncher.Describe("chown", [$"{OsUser}:{OsUser}", passwordFile], _rootDirectory), TimeSpan.FromSeconds(30))
                    .ConfigureAwait(false);
            }

            await ProcessLauncher.RunCheckedAsync(
                ProcessLauncher.Describe(
                    Path.Combine(_binDirectory, "initdb"),
                    [
                        "-D", _dataDirectory, "-U", Superuser, $"--pwfile={passwordFile}",
                        "--auth-host=scram-sha-256", "--auth-local=peer",
                        "-E", "UTF8", "--locale=C", "--data-checksums", "--no-instructions",
                    ],
                    _rootDirectory,
                    runAs: OsUser),
                TimeSpan.FromMinutes(5)).ConfigureAwait(false);
        }
        finally
        {
            File.Delete(passwordFile);
        }

        report($"initialised a new PostgreSQL cluster in {_dataDirectory}");
    }

    public Process Start(Action<string> onLine)
    {
        var binDirectory = _binDirectory ?? throw new InvalidOperationException("PrepareAsync first.");
        string[] arguments =
        [
            "-D", _dataDirectory,
            "-p", _port.ToString(CultureInfo.InvariantCulture),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", "fsync=on",
            "-c", "synchronous_commit=on",
            "-c", "full_page_writes=on",
            "-c", "max_connections=300",
            "-c", "logging_collector=off",
            // Logical decoding: the backup service's incremental and differential backups read a replication slot per target.
            "-c", "wal_level=logical",
            "-c", "max_replication_slots=16",
            "-c", "max_wal_senders=16",
        ];
        return ProcessLauncher.Start(
            ProcessLauncher.Describe(Path.Combine(binDirectory, "postgres"), arguments, _rootDirectory, ownSession: true, runAs: OsUser),
            onLine);
    }

    public Task<HealthResult> CheckHealthAsync(CancellationToken cancellationToken) =>
        PostgresConnections.PingAsync(AdminConnectionString, cancellationToken);

    public int DisplayPid(Process process) => PostmasterPid() is { } pid && UnixProcess.IsAlive(pid) ? pid : process.Id;

    /// <summary><c>pg_ctl stop -m fast</c>: disconnects clients, checkpoints, exits.</summary>
    public async Task StopAsync(Process process, Action<string> report)
    {
        if (process.HasExited)
        {
            return;
        }

        var (exitCode, output) = await ProcessLauncher.RunAsync(PgCtlStop(), StopTimeout + TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        if (exitCode != 0)
        {
            report($"pg_ctl stop failed with exit code {exitCode}: {output}");
        }

        if (!await process.WaitForExitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false))
        {
            await process.TerminateAsync(TimeSpan.FromSeconds(10), report).ConfigureAwait(false);
        }
    }

    private ProcessStartInfo PgCtlStop() =>
        ProcessLauncher.Describe(
            Path.Combine(_binDirectory!, "pg_ctl"),
            ["stop", "-D", _dataDirectory, "-m", "fast", "-w", "-t", StopTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)],
            _rootDirectory,
            runAs: OsUser);

    private int? PostmasterPid()
    {
        try
        {
            var firstLine = File.ReadLines(Path.Combine(_dataDirectory, "postmaster.pid")).FirstOrDefault();
            return int.TryParse(firstLine, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>$LIFELINE_PG_BINDIR, PostgreSQL 15's Debian location, <c>pg_config --bindir</c>, then the newest installed.</summary>
    private static async Task<string> FindBinDirectoryAsync()
    {
        static bool HasServer(string? directory) =>
            !string.IsNullOrEmpty(directory) && File.Exists(Path.Combine(directory, "postgres")) && File.Exists(Path.Combine(directory, "initdb"));

        var candidates = new List<string?> { Environment.GetEnvironmentVariable("LIFELINE_PG_BINDIR"), "/usr/lib/postgresql/15/bin" };
        if (ProcessLauncher.FindExecutable("pg_config") is { } pgConfig)
        {
            var (exitCode, output) = await ProcessLauncher.RunAsync(ProcessLauncher.Describe(pgConfig, ["--bindir"], "/"), TimeSpan.FromSeconds(10))
                .ConfigureAwait(false);
            candidates.Add(exitCode == 0 ? output.Trim() : null);
        }

        if (Directory.Exists("/usr/lib/postgresql"))
        {
            candidates.AddRange(Directory.GetDirectories("/usr/lib/postgresql")
                .OrderByDescending(d => int.TryParse(Path.GetFileName(d), CultureInfo.InvariantCulture, out var version) ? version : 0)
                .Select(d => Path.Combine(d, "bin")));
        }

        return candidates.FirstOrDefault(HasServer)
            ?? throw new AppHostException(
                "PostgreSQL server binaries (postgres, initdb) were not found in $LIFELINE_PG_BINDIR, /usr/lib/postgresql/15/bin " +
                "or `pg_config --bindir`. Run build/setup.sh, or pass --postgres with a connection string to an existing server.");
    }
}

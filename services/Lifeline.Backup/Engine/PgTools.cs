using System.Diagnostics;
using System.Text;
using Lifeline.Backup.Options;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Backup.Engine;

/// <summary>
/// Runs pg_dump and pg_restore as child processes with an argument list (no shell). The password never
/// appears on a command line or in a log: it goes into a 0600 password file named by PGPASSFILE,
/// deleted when the process ends.
/// </summary>
public sealed class PgTools(IOptions<BackupOptions> options)
{
    private readonly Lazy<string> _binDirectory = new(() => FindBinDirectory(options.Value.PgBinDirectory));

    public string BinDirectory => _binDirectory.Value;

    /// <summary>
    /// Dumps <paramref name="connectionString"/>'s database in custom format to <paramref name="output"/>,
    /// in the exported snapshot <paramref name="snapshot"/> when given.
    /// </summary>
    public async Task DumpAsync(string connectionString, string? snapshot, int compression, Stream output, CancellationToken ct)
    {
        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        List<string> args = ["--format=custom", $"--compress={compression}", "--no-password", .. ConnectionArguments(settings)];
        if (snapshot is not null)
        {
            args.Add($"--snapshot={snapshot}");
        }
        await RunAsync("pg_dump", args, settings, stdin: null, stdout: output, ct);
    }

    /// <summary>Restores a custom-format dump file into <paramref name="connectionString"/>'s (empty) database, all or nothing.</summary>
    public Task RestoreAsync(string connectionString, string dumpFile, CancellationToken ct)
    {
        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        List<string> args = ["--single-transaction", "--exit-on-error", "--no-password", .. ConnectionArguments(settings), dumpFile];
        return RunAsync("pg_restore", args, settings, stdin: null, stdout: null, ct);
    }

    private static IEnumerable<string> ConnectionArguments(NpgsqlConnectionStringBuilder settings)
    {
        yield return $"--host={settings.Host}";
        yield return $"--port={settings.Port}";
        if (!string.IsNullOrEmpty(settings.Username))
        {
            yield return $"--username={settings.Username}";
        }
        yield return $"--dbname={settings.Database}";
    }

    private async Task RunAsync(string tool, IReadOnlyList<string> args, NpgsqlConnectionStringBuilder settings,
        Stream? stdin, Stream? stdout, CancellationToken ct)
    {
        var passFile = settings.Password is { Length: > 0 } ? WritePassFile(settings) : null;
        try
        {
            var start = new ProcessStartInfo(Path.Combine(BinDirectory, tool))
            {
                RedirectStandardOutput = stdout is not null,
                RedirectStandardError = true,
                RedirectStandardInput = stdin is not null,
                UseShellExecute = false,
            };
            foreach (var a in args)
            {
                start.ArgumentList.Add(a);
            }
            start.Environment.Remove("PGPASSWORD");
            start.Environment["PGAPPNAME"] = "lifeline-backup";
            start.Environment["PGCONNECT_TIMEOUT"] = "15";
            if (passFile is not null)
            {
                start.Environment["PGPASSFILE"] = passFile;
            }
            if (settings.SslMode is SslMode.Require or SslMode.VerifyCA or SslMode.VerifyFull)
            {
                start.Environment["PGSSLMODE"] = settings.SslMode.ToString().ToLowerInvariant().Replace("verifyca", "verify-ca").Replace("verifyfull", "verify-full");
            }

            using var process = Process.Start(start) ?? throw new InvalidOperationException($"{tool} did not start.");
            var stderr = new StringBuilder();
            var errorPump = Task.Run(async () =>
            {
                string? line;
                while ((line = await process.StandardError.ReadLineAsync(CancellationToken.None)) is not null)
                {
                    if (stderr.Length < 8000)
                    {
                        stderr.AppendLine(line);
                    }
                }
            }, CancellationToken.None);
            try
            {
                if (stdout is not null)
                {
                    await process.StandardOutput.BaseStream.CopyToAsync(stdout, 1 << 20, ct);
                }
                await process.WaitForExitAsync(ct);
            }
            catch (OperationCanceledException)
            {
                // An interrupted backup or restore must not leave the tool running on.
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // already gone
                }
                await process.WaitForExitAsync(CancellationToken.None);
                throw;
            }
            await errorPump;
            if (process.ExitCode != 0)
            {
                throw new PgToolException(tool, process.ExitCode, stderr.ToString().Trim());
            }
        }
        finally
        {
            if (passFile is not null)
            {
                File.Delete(passFile);
            }
        }
    }

    private static string WritePassFile(NpgsqlConnectionStringBuilder settings)
    {
        static string Escape(string? v) => (v ?? "*").Replace("\\", "\\\\", StringComparison.Ordinal).Replace(":", "\\:", StringComparison.Ordinal);
        var path = Path.Combine(Path.GetTempPath(), $"lifeline-backup-{Guid.NewGuid():N}.pgpass");
        var line = $"{Escape(settings.Host)}:{settings.Port}:*:{Escape(settings.Username)}:{Escape(settings.Password)}\n";
        using (var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        {
            stream.Write(Encoding.UTF8.GetBytes(line));
        }
        return path;
    }

    private static string FindBinDirectory(string? configured)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return File.Exists(Path.Combine(configured, "pg_dump"))
                ? configured
                : throw new InvalidOperationException($"Backup:PgBinDirectory '{configured}' holds no pg_dump.");
        }
        try
        {
            using var pgConfig = Process.Start(new ProcessStartInfo("pg_config", "--bindir") { RedirectStandardOutput = true, UseShellExecute = false });
            if (pgConfig is not null)
            {
                var dir = pgConfig.StandardOutput.ReadToEnd().Trim();
                pgConfig.WaitForExit();
                if (pgConfig.ExitCode == 0 && File.Exists(Path.Combine(dir, "pg_dump")))
                {
                    return dir;
                }
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // no pg_config on PATH
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(Path.Combine(dir, "pg_dump")))
            {
                return dir;
            }
        }
        throw new InvalidOperationException("pg_dump was not found: set Backup:PgBinDirectory or put pg_config on PATH.");
    }
}

/// <summary>pg_dump or pg_restore exited with an error.</summary>
public sealed class PgToolException(string tool, int exitCode, string stderr)
    : Exception($"{tool} exited with code {exitCode}: {stderr}")
{
    public string Tool { get; } = tool;
}

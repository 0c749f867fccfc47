using Lifeline.Processes;
using System.ComponentModel;
using System.Diagnostics;
using System.Text;

namespace Lifeline.AppHost.Processes;

/// <summary>Builds and starts child processes with their output always drained line by line.</summary>
internal static class ProcessLauncher
{
    private static readonly string? Setsid = FindExecutable("setsid", "/usr/bin/setsid", "/bin/setsid");
    private static readonly string? Runuser = FindExecutable("runuser", "/usr/sbin/runuser", "/sbin/runuser");

    /// <summary>
    /// A start description for <paramref name="executable"/>. <paramref name="ownSession"/> runs it in a session of
    /// its own (setsid, which execs without forking, so the pid stays the same): a terminal's Ctrl-C then reaches
    /// only the apphost, which stops the children in order instead of having them all die at once.
    /// <paramref name="runAs"/> runs it as that OS user when we are root (via runuser), as PostgreSQL requires.
    /// </summary>
    public static ProcessStartInfo Describe(
        string executable, IEnumerable<string> arguments, string workingDirectory, bool ownSession = false, string? runAs = null)
    {
        var commandLine = new List<string>();
        if (ownSession && Setsid is not null)
        {
            commandLine.Add(Setsid);
        }

        if (runAs is not null && UnixProcess.IsRoot)
        {
            commandLine.AddRange([Runuser ?? throw new AppHostException("runuser (util-linux) is needed to run PostgreSQL as root."), "-u", runAs, "--"]);
        }

        commandLine.Add(executable);
        commandLine.AddRange(arguments);

        var info = new ProcessStartInfo(commandLine[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true, // children must not read the apphost's terminal
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var argument in commandLine.Skip(1))
        {
            info.ArgumentList.Add(argument);
        }

        return info;
    }

    /// <summary>Starts a long-running process; each line it writes to stdout or stderr goes to <paramref name="onLine"/>.</summary>
    public static Process Start(ProcessStartInfo startInfo, Action<string> onLine)
    {
        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                onLine(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                onLine(e.Data);
            }
        };
        try
        {
            process.Start();
        }
        catch (Exception ex) when (ex is Win32Exception or InvalidOperationException)
        {
            process.Dispose();
            throw new AppHostException($"Could not start '{Display(startInfo)}': {ex.Message}", ex);
        }

        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Runs a command to completion; returns its exit code and combined output.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(ProcessStartInfo startInfo, TimeSpan timeout)
    {
        var output = new StringBuilder();
        using var process = Start(startInfo, line =>
        {
            lock (output)
            {
                output.AppendLine(line);
            }
        });
        using var timeoutSource = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited meanwhile.
            }

            throw new AppHostException($"'{Display(startInfo)}' did not finish within {timeout.TotalSeconds:0} s. Output:\n{output}");
        }

        lock (output)
        {
            return (process.ExitCode, output.ToString().TrimEnd());
        }
    }

    /// <summary>Runs a command to completion and throws, with its output, unless it exits with 0.</summary>
    public static async Task<string> RunCheckedAsync(ProcessStartInfo startInfo, TimeSpan timeout)
    {
        var (exitCode, output) = await RunAsync(startInfo, timeout).ConfigureAwait(false);
        return exitCode == 0
            ? output
            : throw new AppHostException($"'{Display(startInfo)}' failed with exit code {exitCode}:\n{output}");
    }

    /// <summary>Waits for the process to exit; false if it is still running after <paramref name="timeout"/>.</summary>
    public static async Task<bool> WaitForExitAsync(this Process process, TimeSpan timeout)
    {
        using var timeoutSource = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>SIGTERM, then SIGKILL (whole tree) if it has not exited within <paramref name="grace"/>.</summary>
    public static async Task TerminateAsync(this Process process, TimeSpan grace, Action<string> report)
    {
        if (process.HasExited)
        {
            return;
        }

        UnixProcess.Signal(process.Id, UnixProcess.SigTerm);
        if (await process.WaitForExitAsync(grace).ConfigureAwait(false))
        {
            return;
        }

        report($"pid {process.Id} did not stop within {grace.TotalSeconds:0} s of SIGTERM; killing it");
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Exited meanwhile.
        }

        await process.WaitForExitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
    }

    public static string Display(ProcessStartInfo startInfo) =>
        string.Join(' ', startInfo.ArgumentList.Prepend(startInfo.FileName));

    public static string? FindExecutable(string name, params string[] wellKnownPaths) =>
        wellKnownPaths
            .Concat((Environment.GetEnvironmentVariable("PATH") ?? "")
                .Split(':', StringSplitOptions.RemoveEmptyEntries)
                .Select(directory => Path.Combine(directory, name)))
            .FirstOrDefault(File.Exists);
}

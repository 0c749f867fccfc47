using System.Diagnostics;
using System.Text;

namespace Lifeline.Testing.Internal;

/// <summary>Starts child processes with their output always drained, so a full pipe can never block them.</summary>
internal static class ChildProcess
{
    public static ProcessStartInfo StartInfo(string fileName, IEnumerable<string> arguments, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
            CreateNoWindow = true,
        };
        if (workingDirectory is not null)
        {
            info.WorkingDirectory = workingDirectory;
        }

        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        return info;
    }

    /// <summary>Runs a command to completion and returns its exit code and combined output.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(
        ProcessStartInfo startInfo, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var output = new OutputLog(maxLines: 400);
        using var process = Start(startInfo, output);
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            KillQuietly(process);
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException(
                $"'{Describe(startInfo)}' did not finish within {timeout.TotalSeconds:0} s. Output:\n{output.Tail()}");
        }

        // The no-argument overload waits until both redirected streams reached end of file.
        process.WaitForExit();
        return (process.ExitCode, output.Tail());
    }

    /// <summary>Starts a long-running process whose output lines go to <paramref name="output"/>.</summary>
    public static Process Start(ProcessStartInfo startInfo, OutputLog output)
    {
        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => output.Append(e.Data);
        process.ErrorDataReceived += (_, e) => output.Append(e.Data);
        try
        {
            process.Start();
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            process.Dispose();
            throw new InvalidOperationException($"Could not start '{Describe(startInfo)}': {ex.Message}", ex);
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    public static void KillQuietly(Process process, bool entireProcessTree = true)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree);
                process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
            // Never started or already gone.
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // Exited while we were killing it.
        }
    }

    public static string Describe(ProcessStartInfo startInfo) =>
        startInfo.ArgumentList.Count == 0
            ? startInfo.FileName
            : $"{startInfo.FileName} {string.Join(' ', startInfo.ArgumentList)}";
}

/// <summary>Thread-safe tail of a process's output, optionally mirrored to a file.</summary>
internal sealed class OutputLog(int maxLines = 200, string? filePath = null)
{
    private readonly Queue<string> _lines = new();
    private readonly object _gate = new();

    public void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            _lines.Enqueue(line);
            while (_lines.Count > maxLines)
            {
                _lines.Dequeue();
            }

            if (filePath is not null)
            {
                try
                {
                    File.AppendAllText(filePath, line + "\n");
                }
                catch (IOException)
                {
                    // The log file is a convenience; the in-memory tail is what exceptions report.
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }
    }

    public string Tail(int lines = 40)
    {
        lock (_gate)
        {
            var builder = new StringBuilder();
            foreach (var line in _lines.Skip(Math.Max(0, _lines.Count - lines)))
            {
                builder.Append(line).Append('\n');
            }

            return builder.Length == 0 ? "(no output)" : builder.ToString();
        }
    }

    public bool Contains(string text)
    {
        lock (_gate)
        {
            return _lines.Any(l => l.Contains(text, StringComparison.OrdinalIgnoreCase));
        }
    }
}

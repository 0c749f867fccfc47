using System.Diagnostics;
using System.Text;

namespace Lifeline.Testing;

/// <summary>A process run to completion, with its combined output.</summary>
public sealed record ProcessRun(string CommandLine, int ExitCode, string Output)
{
    /// <summary>Runs <paramref name="fileName"/>; kills it (whole tree) and reports a timeout after <paramref name="timeout"/>.</summary>
    public static async Task<ProcessRun> RunAsync(string fileName, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = workingDirectory,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        var commandLine = $"{fileName} {string.Join(' ', startInfo.ArgumentList)}";
        var output = new StringBuilder();
        using var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Append($"(killed: still running after {timeout.TotalSeconds:0} s)");
            return new ProcessRun(commandLine, -1, Text());
        }

        process.WaitForExit(); // drains the redirected streams
        return new ProcessRun(commandLine, process.ExitCode, Text());

        void Append(string? line)
        {
            if (line is not null)
            {
                lock (output)
                {
                    output.AppendLine(line);
                }
            }
        }

        string Text()
        {
            lock (output)
            {
                return output.ToString();
            }
        }
    }

    public override string ToString() => $"`{CommandLine}` exited with {ExitCode}:\n{Output}";
}

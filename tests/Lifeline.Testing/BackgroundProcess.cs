using System.Diagnostics;

namespace Lifeline.Testing;

/// <summary>A long-running child process of a test (a worker, a standby service) with its output in a file; killed on dispose.</summary>
public sealed class BackgroundProcess : IDisposable
{
    private readonly Process _process;

    private BackgroundProcess(Process process, string logFile)
    {
        _process = process;
        LogFile = logFile;
    }

    public int Pid => _process.Id;

    public string LogFile { get; }

    public bool HasExited => _process.HasExited;

    public static BackgroundProcess Start(string fileName, IEnumerable<string> arguments, string workingDirectory, string logFile,
        IReadOnlyDictionary<string, string?>? environment = null, bool clearEnvironment = false)
    {
        var startInfo = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            WorkingDirectory = workingDirectory,
        };
        if (clearEnvironment)
        {
            startInfo.Environment.Clear();
        }
        // A Lifeline process started by a test shares the tests' identity key unless the test says otherwise.
        foreach (var (name, value) in TestIdentity.Environment)
        {
            startInfo.Environment[name] = value;
        }
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            startInfo.Environment[name] = value;
        }
        // exec: the pid is the program's own, so a signal reaches it and not a shell.
        foreach (var argument in (string[])["-c", "exec \"$0\" \"$@\" </dev/null >>\"$BACKGROUND_LOG\" 2>&1", fileName, .. arguments])
        {
            startInfo.ArgumentList.Add(argument);
        }
        startInfo.Environment["BACKGROUND_LOG"] = logFile;
        var process = Process.Start(startInfo) ?? throw new InvalidOperationException($"could not start {fileName}");
        return new BackgroundProcess(process, logFile);
    }

    public string LogTail(int lines = 40)
    {
        try
        {
            var all = File.ReadAllLines(LogFile);
            return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        catch (IOException e)
        {
            return $"(no log: {e.Message})";
        }
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}

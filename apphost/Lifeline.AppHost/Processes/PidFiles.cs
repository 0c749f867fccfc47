using Lifeline.Processes;
using System.Diagnostics;
using System.Globalization;

namespace Lifeline.AppHost.Processes;

/// <summary>
/// Records the pid (and start time) of every process the apphost starts in <c>.lifeline/run/NAME.pid</c>, so that
/// after an apphost was killed outright (its children survive, in sessions of their own) the next run can stop
/// the leftovers instead of failing on ports they still hold.
/// </summary>
internal sealed class PidFiles(string directory)
{
    public void Write(string name, Process process)
    {
        Directory.CreateDirectory(directory);
        var startTime = UnixProcess.StartTime(process.Id);
        File.WriteAllText(PathOf(name), string.Create(CultureInfo.InvariantCulture, $"{process.Id} {startTime}\n"));
    }

    public void Delete(string name) => File.Delete(PathOf(name));

    /// <summary>
    /// Stops the process a previous apphost recorded under <paramref name="name"/>, if it still runs, is the same
    /// process (pid and start time) and its command line contains <paramref name="commandFragment"/>.
    /// </summary>
    public async Task StopLeftoverAsync(string name, string commandFragment, Action<string> report)
    {
        var path = PathOf(name);
        if (!File.Exists(path))
        {
            return;
        }

        var fields = (await File.ReadAllTextAsync(path).ConfigureAwait(false)).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (fields.Length == 2
            && int.TryParse(fields[0], CultureInfo.InvariantCulture, out var pid)
            && long.TryParse(fields[1], CultureInfo.InvariantCulture, out var startTime)
            && UnixProcess.IsAlive(pid, startTime)
            && UnixProcess.CommandLine(pid).Contains(commandFragment, StringComparison.Ordinal))
        {
            report($"stopping {name} (pid {pid}) left running by an earlier apphost");
            UnixProcess.Signal(pid, UnixProcess.SigTerm);
            if (!await UnixProcess.WaitForExitAsync(pid, TimeSpan.FromSeconds(20)).ConfigureAwait(false))
            {
                UnixProcess.Signal(pid, UnixProcess.SigKill);
                await UnixProcess.WaitForExitAsync(pid, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
        }

        File.Delete(path);
    }

    private string PathOf(string name) => Path.Combine(directory, name + ".pid");
}

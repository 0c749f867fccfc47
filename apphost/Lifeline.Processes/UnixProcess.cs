using System.Globalization;
using System.Runtime.InteropServices;

namespace Lifeline.Processes;

/// <summary>Just enough of the Unix process model to signal processes and recognise ones we started earlier.</summary>
public static class UnixProcess
{
    public const int SigQuit = 3;
    public const int SigKill = 9;
    public const int SigTerm = 15;

    public static bool IsRoot => Environment.IsPrivilegedProcess;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int NativeKill(int pid, int signal);

    public static bool Signal(int pid, int signal) => pid > 0 && NativeKill(pid, signal) == 0;

    /// <summary>Start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, it names one process for good.</summary>
    public static long? StartTime(int pid)
    {
        var fields = StatFields(pid);
        return fields is { Length: > 19 } && long.TryParse(fields[19], CultureInfo.InvariantCulture, out var start) ? start : null;
    }

    /// <summary>True while <paramref name="pid"/> runs (a zombie counts as gone) and, when given, started at <paramref name="startTime"/>.</summary>
    public static bool IsAlive(int pid, long? startTime = null)
    {
        var fields = pid > 0 ? StatFields(pid) : null;
        if (fields is null || fields.Length < 20 || fields[0] is "Z" or "X")
        {
            return false;
        }

        return startTime is null || StartTime(pid) == startTime;
    }

    public static string CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>Polls until the process is gone; true if it went within <paramref name="timeout"/> (blocking; for exit handlers).</summary>
    public static bool WaitForExit(int pid, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (IsAlive(pid))
        {
            if (DateTime.UtcNow >= deadline)
            {
                return false;
            }

            Thread.Sleep(25);
        }

        return true;
    }

    /// <summary>Polls until the process is gone; true if it went within <paramref name="timeout"/>.</summary>
    public static async Task<bool> WaitForExitAsync(int pid, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (IsAlive(pid))
        {
            if (DateTime.UtcNow >= deadline)
            {
                return false;
            }

            await Task.Delay(50).ConfigureAwait(false);
        }

        return true;
    }

    /// <summary>Fields of /proc/PID/stat after the command name, so index 0 is field 3 (state).</summary>
    private static string[]? StatFields(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var end = stat.LastIndexOf(')');
            return end < 0 ? null : stat[(end + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

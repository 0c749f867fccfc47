using System.Globalization;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>Resident memory of the service process: now (VmRSS) and its peak so far (VmHWM), from /proc/PID/status.</summary>
internal sealed record ServiceMemory(long RssBytes, long PeakRssBytes)
{
    public double RssMiB => RssBytes / 1048576.0;

    public double PeakRssMiB => PeakRssBytes / 1048576.0;

    /// <summary>Null when the process is gone or /proc is not readable.</summary>
    public static ServiceMemory? Read(int pid)
    {
        try
        {
            long? rss = null, hwm = null;
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    rss = Kilobytes(line);
                }
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    hwm = Kilobytes(line);
                }
            }

            return rss is { } r && hwm is { } h ? new ServiceMemory(r * 1024, h * 1024) : null;
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

    // "VmRSS:	  123456 kB"
    private static long Kilobytes(string line) =>
        long.Parse(line.AsSpan(line.IndexOf(':', StringComparison.Ordinal) + 1).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
}

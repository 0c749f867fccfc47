using System.Globalization;
using System.Runtime.InteropServices;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>The machine the benchmark ran on (client, service and databases all share it when run locally).</summary>
internal sealed record MachineInfo(string Cpu, int Cores, long RamBytes, string Os, string Runtime)
{
    public override string ToString() =>
        $"{Cpu}, {Cores} cores, {RamBytes / 1073741824.0:0.0} GiB RAM, {Os}, {Runtime}";

    public static MachineInfo Collect() =>
        new(CpuModel(), Environment.ProcessorCount, TotalMemoryBytes(), OsName(), RuntimeInformation.FrameworkDescription);

    private static string CpuModel() =>
        ReadLines("/proc/cpuinfo")
            .Where(line => line.StartsWith("model name", StringComparison.Ordinal))
            .Select(line => line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim())
            .FirstOrDefault() ?? RuntimeInformation.ProcessArchitecture.ToString();

    private static long TotalMemoryBytes()
    {
        // "MemTotal:       24684100 kB"
        var line = ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        var parts = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts is { Length: >= 2 } && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var kilobytes)
            ? kilobytes * 1024
            : GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    private static string OsName()
    {
        var kernel = ReadLines("/proc/sys/kernel/osrelease").FirstOrDefault();
        return kernel is null ? RuntimeInformation.OSDescription : $"{RuntimeInformation.OSDescription}, kernel {kernel}";
    }

    /// <summary>1, 5 and 15 minute load averages: other work on the machine competes with the benchmark for its cores.</summary>
    public static string LoadAverage() =>
        ReadLines("/proc/loadavg").FirstOrDefault() is { } line ? string.Join(' ', line.Split(' ').Take(3)) : "unknown";

    private static IEnumerable<string> ReadLines(string path)
    {
        try
        {
            return File.ReadAllLines(path);
        }
        catch (IOException)
        {
            return [];
        }
        catch (UnauthorizedAccessException)
        {
            return [];
        }
    }
}

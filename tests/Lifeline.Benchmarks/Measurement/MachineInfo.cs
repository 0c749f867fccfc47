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
        var pretty = ReadLines("/etc/os-release")
            .Where(line => line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
            .Select(line => line["PRETTY_NAME=".Length..].Trim('"'))
            .FirstOrDefault();
        return pretty is null ? RuntimeInformation.OSDescription : $"{pretty} ({RuntimeInformation.OSDescription})";
    }

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

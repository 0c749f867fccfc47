using System.Diagnostics;
using System.Globalization;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// CPU used over a phase, in cores (CPU-seconds per second): by the whole machine (/proc/stat), by this
/// benchmark process (the client), by the service process, and by the local Redis and PostgreSQL when this
/// run started them. What is left of the machine's busy time went to everything else on the machine. On a
/// shared machine this tells whether a rate was limited by the service's own cost or by the cores it got.
/// </summary>
/// <param name="MachineBusyPercent">Share of all cores' time not idle (user, system, irq, steal…), whoever used it.</param>
/// <param name="MachineStealPercent">Share of all cores' time the hypervisor gave to other guests.</param>
internal sealed record CpuUse(
    double Seconds,
    int MachineCores,
    double MachineBusyPercent,
    double MachineStealPercent,
    double ClientCores,
    double? ServiceCores,
    double? RedisCores,
    double? PostgresCores)
{
    /// <summary>Busy cores not used by the client, the service, Redis or PostgreSQL: other work on the machine.</summary>
    public double OtherCores =>
        Math.Max(0, MachineBusyPercent / 100 * MachineCores - ClientCores - (ServiceCores ?? 0) - (RedisCores ?? 0) - (PostgresCores ?? 0));

    /// <summary>CPU time per operation of one of the cores figures, in microseconds.</summary>
    public double? MicrosecondsPer(double? cores, long operations) =>
        cores is { } c && operations > 0 ? c * Seconds * 1e6 / operations : null;
}

/// <summary>Which processes to measure besides this one: the service, and the local Redis and PostgreSQL processes.</summary>
internal sealed record CpuSources(int? ServicePid, Func<IReadOnlyList<int>>? RedisPids, Func<IReadOnlyList<int>>? PostgresPids);

/// <summary>A reading of the counters behind <see cref="CpuUse"/>; two make a <see cref="CpuUse"/>.</summary>
internal sealed class CpuMeter
{
    private const double ClockTicksPerSecond = 100; // USER_HZ, the unit of /proc/*/stat on Linux
    private readonly CpuSources _sources;
    private readonly long _timestamp;
    private readonly (long Total, long Idle, long Steal)? _machine;
    private readonly TimeSpan _client;
    private readonly double? _service;
    private readonly Dictionary<int, double>? _redis;
    private readonly Dictionary<int, double>? _postgres;

    private CpuMeter(CpuSources sources)
    {
        _sources = sources;
        _timestamp = Stopwatch.GetTimestamp();
        _machine = ReadMachine();
        using var self = Process.GetCurrentProcess();
        _client = self.TotalProcessorTime;
        _service = sources.ServicePid is { } pid ? ReadProcessSeconds(pid) : null;
        _redis = ReadGroup(sources.RedisPids);
        _postgres = ReadGroup(sources.PostgresPids);
    }

    public static CpuMeter Start(CpuSources sources) => new(sources);

    public CpuUse Stop()
    {
        var end = new CpuMeter(_sources);
        var seconds = (end._timestamp - _timestamp) / (double)Stopwatch.Frequency;
        double busy = 0, steal = 0;
        if (_machine is { } a && end._machine is { } b && b.Total > a.Total)
        {
            busy = 100.0 * (1 - (b.Idle - a.Idle) / (double)(b.Total - a.Total));
            steal = 100.0 * (b.Steal - a.Steal) / (b.Total - a.Total);
        }

        var service = _service is { } s0 && end._service is { } s1 ? (s1 - s0) / seconds : (double?)null;
        return new CpuUse(
            seconds, Environment.ProcessorCount, busy, steal, (end._client - _client).TotalSeconds / seconds, service,
            GroupCores(_redis, end._redis, seconds), GroupCores(_postgres, end._postgres, seconds));
    }

    // A process that started during the phase counts in full; one that ended during it is missed (pooled
    // PostgreSQL connections and the Redis server live through a phase).
    private static double? GroupCores(Dictionary<int, double>? start, Dictionary<int, double>? end, double seconds) =>
        start is null || end is null ? null : end.Sum(p => p.Value - start.GetValueOrDefault(p.Key)) / seconds;

    private static Dictionary<int, double>? ReadGroup(Func<IReadOnlyList<int>>? pids)
    {
        if (pids is null)
        {
            return null;
        }

        var seconds = new Dictionary<int, double>();
        foreach (var pid in pids())
        {
            if (ReadProcessSeconds(pid) is { } s)
            {
                seconds[pid] = s;
            }
        }

        return seconds;
    }

    // "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (guest time is already in user)
    private static (long Total, long Idle, long Steal)? ReadMachine()
    {
        try
        {
            var line = File.ReadLines("/proc/stat").First(l => l.StartsWith("cpu ", StringComparison.Ordinal));
            var v = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)
                .Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            return (v.Sum(), v[3] + v[4], v.Length > 7 ? v[7] : 0);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    // /proc/PID/stat: "pid (comm) state ... utime stime" — utime and stime are fields 14 and 15; comm may hold spaces.
    private static double? ReadProcessSeconds(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / ClockTicksPerSecond;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}

/// <summary>Finds processes by their command line and parent in /proc.</summary>
internal static class ProcessTable
{
    /// <summary>Processes whose command line (arguments joined by spaces) satisfies <paramref name="match"/>.</summary>
    public static IReadOnlyList<int> Find(Func<string, bool> match) =>
        All().Where(p => match(p.CommandLine)).Select(p => p.Pid).ToList();

    /// <summary><paramref name="parents"/> and every process whose parent is one of them (one level).</summary>
    public static IReadOnlyList<int> WithChildren(IReadOnlyList<int> parents) =>
        parents.Concat(All().Where(p => parents.Contains(p.ParentPid)).Select(p => p.Pid)).Distinct().ToList();

    private static IEnumerable<(int Pid, int ParentPid, string CommandLine)> All()
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            string commandLine, stat;
            try
            {
                commandLine = File.ReadAllText($"{directory}/cmdline").Replace('\0', ' ').Trim();
                stat = File.ReadAllText($"{directory}/stat");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                continue; // gone meanwhile
            }

            // "pid (comm) state ppid ..."
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (rest.Length > 1 && int.TryParse(rest[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent))
            {
                yield return (pid, parent, commandLine);
            }
        }
    }
}

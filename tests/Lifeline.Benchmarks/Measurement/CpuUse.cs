using System.Diagnostics;
using System.Globalization;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// CPU used over a phase, in cores (CPU-seconds per second): by the whole machine (/proc/stat), by this
/// benchmark process (the client), by the service process(es), and by the local Redis and PostgreSQL (its whole
/// process tree) when this run started them. What is left of the machine's busy time went to everything else on the machine. On a
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

/// <summary>
/// Which processes to measure besides this one: the service(s), the local Redis, and the local PostgreSQL's whole process
/// tree (the postmaster, its children — backends, checkpointer, WAL writer, autovacuum workers — and the children it has
/// already reaped, through the postmaster's cutime/cstime, so a backend or autovacuum worker that ended during a phase
/// still counts).
/// </summary>
internal sealed record CpuSources(IReadOnlyList<int> ServicePids, Func<IReadOnlyList<int>>? RedisPids, Func<int?>? PostgresPostmaster)
{
    /// <summary>The same sources with <paramref name="other"/>'s service processes measured too (e.g. queue and registry together).</summary>
    public CpuSources WithServicesOf(CpuSources other) => this with { ServicePids = [.. ServicePids.Concat(other.ServicePids).Distinct()] };
}

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
    private readonly double? _postgres;

    private CpuMeter(CpuSources sources)
    {
        _sources = sources;
        // The slow part first (finding PostgreSQL's children), then the rest close together, the time last: a phase's
        // edges are where its counts are read, right after this.
        _postgres = sources.PostgresPostmaster?.Invoke() is { } postmaster ? ReadTreeSeconds(postmaster) : null;
        _redis = ReadGroup(sources.RedisPids);
        // Unknown (not 0) when any service process cannot be read: gone, or a wrong --queue-pid.
        var services = sources.ServicePids.Select(pid => ReadProcessSeconds(pid)).ToList();
        _service = services.Count == 0 || services.Any(s => s is null) ? null : services.Sum(s => s!.Value);
        using var self = Process.GetCurrentProcess();
        _client = self.TotalProcessorTime;
        _machine = ReadMachine();
        _timestamp = Stopwatch.GetTimestamp();
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
            GroupCores(_redis, end._redis, seconds), _postgres is { } p0 && end._postgres is { } p1 ? (p1 - p0) / seconds : null);
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

    /// <summary>
    /// CPU seconds of a process tree one level deep: <paramref name="root"/> itself, its reaped children (cutime, cstime)
    /// and its live children. A child that ends between two readings moves from the last term to the second, so the
    /// difference of two readings is the tree's CPU between them.
    /// </summary>
    private static double? ReadTreeSeconds(int root)
    {
        if (ReadProcessSeconds(root, withReapedChildren: true) is not { } own)
        {
            return null;
        }

        return own + ProcessTable.ChildrenOf(root).Sum(child => ReadProcessSeconds(child) ?? 0);
    }

    // /proc/PID/stat: "pid (comm) state ... utime stime cutime cstime" — fields 14 to 17; comm may hold spaces.
    private static double? ReadProcessSeconds(int pid, bool withReapedChildren = false)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            long Field(int index) => long.Parse(fields[index], CultureInfo.InvariantCulture);
            var ticks = Field(11) + Field(12) + (withReapedChildren ? Field(13) + Field(14) : 0);
            return ticks / ClockTicksPerSecond;
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

    /// <summary>The processes whose parent is <paramref name="parent"/> (reads only /proc/*/stat: cheap enough for every phase edge).</summary>
    public static IReadOnlyList<int> ChildrenOf(int parent)
    {
        var children = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText($"{directory}/stat");
                var rest = stat.AsSpan(stat.LastIndexOf(')') + 2);
                var afterState = rest[(rest.IndexOf(' ') + 1)..];
                var ppid = afterState[..afterState.IndexOf(' ')];
                if (int.TryParse(ppid, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p == parent)
                {
                    children.Add(pid);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // gone meanwhile
            }
        }

        return children;
    }

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

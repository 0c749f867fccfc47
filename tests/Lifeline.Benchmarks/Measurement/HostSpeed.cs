using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// How fast this host runs a fixed piece of work, against the first probe of the run (1.00 = as fast; 0.80 = a fifth
/// slower). <see cref="Cpu"/> is an integer loop (the core's speed); <see cref="Memory"/> a chase of dependent loads
/// through 128 MiB, well past the last-level cache (the latency of the memory that other tenants of the host share).
/// </summary>
internal sealed record HostSpeedReading(double Cpu, double Memory)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Cpu:0.00} / {Memory:0.00}");
}

/// <summary>
/// Probes the host's speed between rows, when the machine is otherwise idle. On the shared 2-core host the same code's
/// CPU per task moves by 15–30 % from one run to the next; a row measured while the host ran slow shows it here, and a
/// change of the code does not (the probe's work never changes).
/// </summary>
internal static class HostSpeed
{
    private const int CpuIterations = 2_000_000;
    private const int Loads = 400_000;
    private static readonly int[] Chain = BuildChain(128 * 1024 * 1024 / sizeof(int));
    private static (double Cpu, double Memory)? baseline;

    /// <summary>
    /// Probes the host (about 0.3 s; the first call also builds and walks the 128 MiB chain, a few seconds) and returns
    /// its speed against the first probe of this process.
    /// </summary>
    public static HostSpeedReading Probe()
    {
        var now = (Cpu: Best(() => CpuWork(CpuIterations)) / CpuIterations, Memory: Best(() => MemoryWork(Loads)) / Loads);
        baseline ??= now;
        return new HostSpeedReading(baseline.Value.Cpu / now.Cpu, baseline.Value.Memory / now.Memory);
    }

    // The best of five runs, in ns: one preempted run says nothing about the host.
    private static double Best(Func<long> work)
    {
        var best = double.MaxValue;
        for (var run = 0; run < 5; run++)
        {
            var started = Stopwatch.GetTimestamp();
            GC.KeepAlive(work());
            best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalNanoseconds);
        }
        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static long CpuWork(int iterations)
    {
        ulong x = 88172645463325252UL, sum = 0;
        for (var i = 0; i < iterations; i++)
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sum += x * 0x9E3779B97F4A7C15UL;
        }
        return (long)sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static long MemoryWork(int loads) => Chase(Chain, loads);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static long Chase(int[] chain, int loads)
    {
        var next = 0;
        for (var i = 0; i < loads; i++)
        {
            next = chain[next];
        }
        return next;
    }

    // One random cycle through every slot (Sattolo's shuffle), so each load depends on the one before.
    private static int[] BuildChain(int length)
    {
        var chain = new int[length];
        for (var i = 0; i < length; i++)
        {
            chain[i] = i;
        }
        var random = new Random(15);
        for (var i = length - 1; i > 0; i--)
        {
            var j = random.Next(i);
            (chain[i], chain[j]) = (chain[j], chain[i]);
        }
        Chase(chain, chain.Length); // once round the whole cycle: every page faulted in before the first probe
        return chain;
    }
}

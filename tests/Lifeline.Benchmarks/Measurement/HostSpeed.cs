using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// How fast this host runs a fixed piece of work, against the first probe of the run (1.00 = as fast; 0.80 = a fifth
/// slower). <see cref="Cpu"/> is an integer loop (the core's speed); <see cref="Memory"/> a chase of dependent loads
/// through 128 MiB, well past the last-level cache (the latency of the memory that other tenants of the host share);
/// <see cref="Syscall"/> the cheapest system call (<c>getppid</c>), the toll of every socket read and write, futex wake
/// and WAL write. The absolute figures (<see cref="CpuNs"/>, <see cref="MemoryNs"/>, <see cref="SyscallNs"/>) compare
/// runs of different days: the same code ran the dispatch stream at 8,000 tasks/s on a host and at 3,300 on one whose
/// system calls cost 1 µs.
/// </summary>
internal sealed record HostSpeedReading(double Cpu, double Memory, double Syscall, double CpuNs, double MemoryNs, double SyscallNs)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Cpu:0.00} / {Memory:0.00} / {Syscall:0.00}");

    /// <summary>The probe's own figures: ns per loop step, per dependent load, per system call.</summary>
    public string Absolute => string.Create(CultureInfo.InvariantCulture,
        $"cpu {CpuNs:0.00} ns/step, memory {MemoryNs:0} ns/load, system call {SyscallNs:0} ns");
}

/// <summary>
/// Probes the host's speed between rows, when the machine is otherwise idle. On the shared 2-core host the same code's
/// CPU per task moves by 15–30 % from one run to the next, and by 2.5× from one day to another; a row measured while
/// the host ran slow shows it here, and a change of the code does not (the probe's work never changes).
/// </summary>
internal static partial class HostSpeed
{
    private const int CpuIterations = 2_000_000;
    private const int Loads = 400_000;
    private const int Syscalls = 20_000;
    private static readonly int[] Chain = BuildChain(128 * 1024 * 1024 / sizeof(int));
    private static (double Cpu, double Memory, double Syscall)? baseline;

    /// <summary>Whether this process probed the host already (the first probe is what later ones are against).</summary>
    public static bool Probed => baseline is not null;

    /// <summary>
    /// Probes the host (about 0.4 s; the first call also builds and walks the 128 MiB chain, a few seconds) and returns
    /// its speed against the first probe of this process, with the probe's own figures.
    /// </summary>
    public static HostSpeedReading Probe()
    {
        var now = (Cpu: Best(() => CpuWork(CpuIterations)) / CpuIterations, Memory: Best(() => MemoryWork(Loads)) / Loads,
            Syscall: Best(() => SyscallWork(Syscalls)) / Syscalls);
        baseline ??= now;
        return new HostSpeedReading(baseline.Value.Cpu / now.Cpu, baseline.Value.Memory / now.Memory, baseline.Value.Syscall / now.Syscall,
            now.Cpu, now.Memory, now.Syscall);
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

    private static long SyscallWork(int calls)
    {
        long sum = 0;
        for (var i = 0; i < calls; i++)
        {
            sum += GetParentProcessId();
        }
        return sum;
    }

    // getppid(2): no argument, no lock, nothing cached by the C library; the kernel's entry and exit is all it costs.
    [LibraryImport("libc", EntryPoint = "getppid")]
    private static partial int GetParentProcessId();

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

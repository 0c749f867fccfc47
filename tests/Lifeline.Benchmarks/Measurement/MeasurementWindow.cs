using System.Diagnostics;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// The measured part of a row: after an untimed warm-up (the same workers, already running), a window of fixed length.
/// At its edges it reads a counter of finished tasks (completions the queue accepted, or tasks created) and the CPU of
/// every process involved, so the rate and the CPU per task cover exactly the same time; in between it reads the counter
/// once a second (the row's timeline). The window ends early when <c>exhausted</c> fires (the row's backlog ran out):
/// the figures then cover the shorter window, and the row says so.
/// </summary>
internal sealed class MeasurementWindow(Func<long> counter, CpuSources cpuSources)
{
    private readonly List<long> _perSecond = [];
    private long _start = long.MaxValue;
    private long _end = long.MaxValue;
    private long _countAtStart;
    private long _countAtEnd;

    /// <summary>Whether a call that started at <paramref name="timestamp"/> (a <see cref="Stopwatch"/> timestamp) falls in the window.</summary>
    public bool Contains(long timestamp) => timestamp >= Volatile.Read(ref _start) && timestamp < Volatile.Read(ref _end);

    public bool Started => Volatile.Read(ref _start) != long.MaxValue;

    public long StartTimestamp => Volatile.Read(ref _start);

    /// <summary>Tasks counted in the window.</summary>
    public long Count => _countAtEnd - _countAtStart;

    public double Seconds => Started && _end != long.MaxValue ? (_end - _start) / (double)Stopwatch.Frequency : 0;

    public double PerSecond => Seconds > 0 ? Count / Seconds : 0;

    /// <summary>Tasks counted in each whole second of the window (the last, partial second is left out).</summary>
    public IReadOnlyList<long> Timeline => _perSecond;

    /// <summary>CPU over the window; null until it ended.</summary>
    public CpuUse? Cpu { get; private set; }

    /// <summary>True when the window ended before its length because <c>exhausted</c> fired.</summary>
    public bool EndedEarly { get; private set; }

    /// <summary>True when <c>exhausted</c> fired during the warm-up: nothing was measured.</summary>
    public bool ExhaustedInWarmUp { get; private set; }

    /// <summary>
    /// Waits out the warm-up, then measures for <paramref name="length"/>; <paramref name="eachSecond"/> runs after each
    /// second's reading (e.g. to read the table's statistics in the cold row).
    /// </summary>
    public async Task RunAsync(TimeSpan warmUp, TimeSpan length, CancellationToken exhausted, Func<int, Task>? eachSecond, CancellationToken ct)
    {
        using var endEarly = CancellationTokenSource.CreateLinkedTokenSource(ct, exhausted);
        if (warmUp > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(warmUp, endEarly.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                ExhaustedInWarmUp = true;
                return;
            }
        }

        var meter = CpuMeter.Start(cpuSources);
        _countAtStart = counter();
        var start = Stopwatch.GetTimestamp();
        Volatile.Write(ref _start, start);
        var previous = _countAtStart;
        var seconds = (int)Math.Ceiling(length.TotalSeconds);
        try
        {
            for (var second = 1; second <= seconds; second++)
            {
                var due = start + (long)(Math.Min(second, length.TotalSeconds) * Stopwatch.Frequency);
                var wait = TimeSpan.FromSeconds((due - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, endEarly.Token);
                }

                if (second <= length.TotalSeconds)
                {
                    var now = counter();
                    _perSecond.Add(now - previous);
                    previous = now;
                }

                if (eachSecond is not null)
                {
                    await eachSecond(second);
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            EndedEarly = true;
        }
        finally
        {
            // The counter first, then the end time, then the CPU: a task counted is inside the window.
            _countAtEnd = counter();
            Volatile.Write(ref _end, Stopwatch.GetTimestamp());
            Cpu = meter.Stop();
        }
    }
}

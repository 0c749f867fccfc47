using System.Diagnostics;
using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>
/// The measured part of a heartbeat scenario: an open-loop schedule (100 ticks per second; at each tick
/// the workers whose index falls on it beat, so 10,000 workers make 100 beats every 10 ms) and the
/// counters the answers update from whichever thread delivers them. The schedule starts with an untimed
/// lead-in at the full rate (thread pools grow, HTTP/2 connections open, hot code is recompiled), then
/// the window is measured: beats sent in it, their answers, the CPU used until every one is answered.
/// </summary>
internal sealed class HeartbeatWindow
{
    public const int TicksPerSecond = 100;

    /// <summary>How long in-flight beats may take to be answered once the schedule ended.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(35);

    private readonly IReadOnlyList<FleetWorker>[] _slots;
    private readonly int _leadInTicks;
    private readonly int _ticks;
    private readonly CpuSources _cpuSources;
    private CpuMeter? _cpu;
    private readonly LatencyRecorder _latencies;
    private readonly List<long> _inFlight = [];
    private long _start = long.MaxValue;
    private long _end;
    private long _sent;
    private long _answered;
    private long _failed;
    private long _lastAnswer;

    public HeartbeatWindow(IReadOnlyList<FleetWorker> workers, TimeSpan leadIn, TimeSpan duration, CpuSources cpuSources, CallErrors? errors = null)
    {
        Errors = errors ?? new CallErrors();
        Workers = workers.Count;
        LeadIn = leadIn;
        Duration = duration;
        _cpuSources = cpuSources;
        _leadInTicks = (int)Math.Round(leadIn.TotalSeconds * TicksPerSecond);
        _ticks = (int)Math.Round(duration.TotalSeconds * TicksPerSecond);
        _slots = Enumerable.Range(0, TicksPerSecond)
            .Select(slot => (IReadOnlyList<FleetWorker>)workers.Where((_, i) => i % TicksPerSecond == slot).ToArray())
            .ToArray();
        Planned = (long)workers.Count * _ticks / TicksPerSecond;
        _latencies = new LatencyRecorder((int)Math.Min(int.MaxValue, Planned + 1000));
    }

    public int Workers { get; }

    public TimeSpan LeadIn { get; }

    public TimeSpan Duration { get; }

    /// <summary>CPU used from the window's first tick until every beat was answered (set by <see cref="DrainAsync"/>).</summary>
    public CpuUse? Cpu { get; private set; }

    public long Planned { get; }

    /// <summary>Failed calls and wrong answers (a stream scenario's include those of opening the streams).</summary>
    public CallErrors Errors { get; }

    /// <summary>Stopwatch timestamp of the window's first tick; beats sent before it (lead-in, opening a stream) are not counted.</summary>
    public long Start => Interlocked.Read(ref _start);

    public long Sent => Interlocked.Read(ref _sent);

    public long Answered => Interlocked.Read(ref _answered);

    public long Failed => Interlocked.Read(ref _failed);

    public long InFlight => Sent - Answered - Failed;

    /// <summary>
    /// Runs the schedule on a thread of its own (so ticks stay on time while the thread pool is busy with
    /// answers): at each tick, <paramref name="send"/>(worker, now) for the tick's workers; it starts the
    /// beat without waiting for the answer and returns false when it could not send.
    /// </summary>
    public Task<LatencySummary?> RunAsync(Func<FleetWorker, long, bool> send, CancellationToken ct) =>
        Task.Factory.StartNew(() => RunTicks(send, ct), ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private LatencySummary? RunTicks(Func<FleetWorker, long, bool> send, CancellationToken ct)
    {
        var lag = new LatencyRecorder(_ticks);
        var tickLength = Stopwatch.Frequency / TicksPerSecond;
        var first = Stopwatch.GetTimestamp();
        for (var tick = 0; tick < _leadInTicks + _ticks; tick++)
        {
            ct.ThrowIfCancellationRequested();
            var due = first + tick * tickLength;
            var wait = due - Stopwatch.GetTimestamp();
            if (wait > Stopwatch.Frequency / 1000)
            {
                Thread.Sleep(TimeSpan.FromSeconds(wait / (double)Stopwatch.Frequency));
            }

            var now = Stopwatch.GetTimestamp();
            var measured = tick >= _leadInTicks;
            if (tick == _leadInTicks)
            {
                // Not the tick's due time: a late lead-in tick may have sent after it, and its beats are not the window's.
                _cpu = CpuMeter.Start(_cpuSources);
                Interlocked.Exchange(ref _start, now);
            }

            if (measured)
            {
                lag.Add(Math.Max(0, now - due));
                if ((tick - _leadInTicks) % TicksPerSecond == 0)
                {
                    _inFlight.Add(InFlight);
                }
            }

            foreach (var worker in _slots[tick % TicksPerSecond])
            {
                if (send(worker, now))
                {
                    worker.MarkBeat(now);
                    if (measured)
                    {
                        Interlocked.Increment(ref _sent);
                    }
                }
            }
        }

        _end = Stopwatch.GetTimestamp();
        return lag.Summarize();
    }

    /// <summary>A beat sent at <paramref name="sentAt"/> was answered; beats sent before the window started are ignored.</summary>
    public void Answer(long sentAt)
    {
        if (sentAt < Start)
        {
            return;
        }

        _latencies.Record(sentAt);
        Interlocked.Increment(ref _answered);
        var now = Stopwatch.GetTimestamp();
        long last;
        while ((last = Interlocked.Read(ref _lastAnswer)) < now && Interlocked.CompareExchange(ref _lastAnswer, now, last) != last)
        {
        }
    }

    /// <summary>A beat sent in the window failed (its error is recorded separately).</summary>
    public void Fail(long sentAt)
    {
        if (sentAt >= Start)
        {
            Interlocked.Increment(ref _failed);
        }
    }

    /// <summary>Waits until every beat sent is answered or failed; false when some are still outstanding after the drain timeout.</summary>
    public async Task<bool> DrainAsync(CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(DrainTimeout.TotalSeconds * Stopwatch.Frequency);
        try
        {
            while (InFlight > 0)
            {
                if (Stopwatch.GetTimestamp() > deadline)
                {
                    return false;
                }

                await Task.Delay(20, ct);
            }

            return true;
        }
        finally
        {
            Cpu = _cpu?.Stop();
        }
    }

    public HeartbeatResult Result(
        string mode, LatencySummary? scheduleLag, int streamsOpened, double? streamsOpenSeconds, PostgresWrites? postgres,
        ServiceMemory? memory, bool drained)
    {
        var offered = Planned / Duration.TotalSeconds;
        var lastAnswer = Interlocked.Read(ref _lastAnswer);
        var achieved = Answered == 0 ? 0 : Answered / ScenarioContext.SecondsSince(Start, lastAnswer);
        var backlogGrew = BacklogGrew(_inFlight, offered);
        var sustained = achieved >= 0.99 * offered && !backlogGrew && Errors.Count == 0 && drained;
        var verified = drained && Errors.Count == 0 && Answered == Sent;
        var skipped = Planned - Sent;
        var check = verified
            ? $"ok: {Answered:N0} answered{(skipped > 0 ? $", {skipped:N0} not sent (the worker's previous beat still pending)" : "")}"
            : $"{(drained ? "" : $"{InFlight:N0} STILL UNANSWERED; ")}MISMATCH: {Answered:N0}/{Sent:N0} answered, {Failed:N0} failed, {Errors.Count:N0} errors";
        return new HeartbeatResult(
            mode, Workers, Duration.TotalSeconds, offered, Planned, Sent, Sent / Math.Max(Duration.TotalSeconds, ScenarioContext.SecondsSince(Start, _end)), Answered, achieved, _latencies.Summarize(), scheduleLag,
            _inFlight.ToArray(), backlogGrew, sustained, streamsOpened, streamsOpenSeconds, Errors.Count, Errors.Distinct, LeadIn.TotalSeconds, Cpu!, postgres, memory,
            verified, check);
    }

    /// <summary>
    /// The service fell behind when the in-flight count late in the window is well above where it was early
    /// on: the last third of the once-a-second samples (each taken just before a tick's beats are sent)
    /// averages more than twice the first third (skipping the sample before the first tick) plus two ticks'
    /// worth of beats.
    /// </summary>
    private static bool BacklogGrew(IReadOnlyList<long> samples, double offeredPerSecond)
    {
        var measured = samples.Skip(1).ToArray();
        if (measured.Length < 2)
        {
            return false;
        }

        var third = Math.Max(1, measured.Length / 3);
        var early = measured.Take(third).Average();
        var late = measured.TakeLast(third).Average();
        return late > 2 * early + 2.0 * offeredPerSecond / TicksPerSecond;
    }
}

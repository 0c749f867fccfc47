using Microsoft.Extensions.Logging;

namespace Lifeline.ServiceDefaults.Hosting;

/// <summary>One pass of a background loop: does its work and returns how long to wait before the next pass
/// (<see cref="LoopRunner.Done"/> when the loop's work is finished for good).</summary>
public delegate Task<TimeSpan> LoopPass(CancellationToken ct);

/// <summary>
/// The one policy every background loop runs under (hosted ones through <see cref="BackgroundLoop"/>; loops a
/// service starts itself, such as one watch per tenant, directly). A loop stops only when its token is cancelled
/// (shutdown, or the end of whatever it was started for) or when a pass says it is <see cref="Done"/>. Any
/// other exception from a pass is logged (event 9201), counted (<c>lifeline.background.failures</c>), and waited
/// out with <see cref="LoopBackoff"/> before the next pass; a pass that completes resets the backoff.
/// </summary>
public sealed partial class LoopRunner(string name, ILogger logger, LoopBackoff? backoff = null, TimeProvider? time = null)
{
    /// <summary>Returned by a pass whose loop has nothing more to do.</summary>
    public static readonly TimeSpan Done = Timeout.InfiniteTimeSpan;

    private readonly LoopBackoff _backoff = backoff ?? LoopBackoff.Default;
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private int _failures;

    /// <summary>The loop's name in logs and metrics.</summary>
    public string Name { get; } = name;

    /// <summary>Runs passes until <paramref name="ct"/> is cancelled or a pass returns <see cref="Done"/>; never throws.</summary>
    public async Task RunAsync(LoopPass pass, CancellationToken ct, TimeSpan firstDelay = default)
    {
        var delay = firstDelay;
        try
        {
            while (delay != Done)
            {
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay, _time, ct);
                }
                else
                {
                    ct.ThrowIfCancellationRequested();
                }
                delay = await PassAsync(pass, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // stopping
        }
    }

    /// <summary>
    /// Runs one pass under the policy and returns the wait before the next: the pass's own, the backoff after a
    /// failure, or <see cref="Done"/> when <paramref name="ct"/> was cancelled (whatever the pass threw then).
    /// </summary>
    public async Task<TimeSpan> PassAsync(LoopPass pass, CancellationToken ct)
    {
        try
        {
            var next = await pass(ct);
            BackgroundWorkMetrics.Passed(Name);
            if (_failures > 0)
            {
                LogRecovered(logger, Name, _failures);
                _failures = 0;
            }
            return next;
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            return Done; // stopping: what a cancelled pass throws is the cancellation, whatever its type
        }
        catch (Exception exception)
        {
            _failures++;
            var wait = _backoff.After(_failures, Random.Shared.NextDouble());
            BackgroundWorkMetrics.Failed(Name, exception);
            LogPassFailed(logger, Name, _failures, wait.TotalMilliseconds, exception);
            return wait;
        }
    }

    [LoggerMessage(EventId = 9201, Level = LogLevel.Warning,
        Message = "Background loop {Loop}: pass failed ({Failures} in a row); next pass in {WaitMs:0} ms")]
    private static partial void LogPassFailed(ILogger logger, string loop, int failures, double waitMs, Exception exception);

    [LoggerMessage(EventId = 9202, Level = LogLevel.Information, Message = "Background loop {Loop}: a pass completed again after {Failures} failed")]
    private static partial void LogRecovered(ILogger logger, string loop, int failures);
}

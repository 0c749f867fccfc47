using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lifeline.ServiceDefaults.Hosting;

/// <summary>
/// Base of every hosted background loop: a loop is a sequence of passes (<see cref="RunPassAsync"/>), each
/// returning the wait before the next, run under the one <see cref="LoopRunner"/> policy — it stops only on
/// shutdown; any failure of a pass is logged, counted, backed off and followed by the next pass. A loop's
/// name in logs and metrics is its type's name.
/// </summary>
public abstract class BackgroundLoop : BackgroundService
{
    /// <summary>Returned by a pass whose loop has nothing more to do (a one-off that succeeded, a disabled loop).</summary>
    protected static readonly TimeSpan Done = LoopRunner.Done;

    private readonly LoopRunner _runner;
    private TimeSpan? _afterFirstPass;

    protected BackgroundLoop(ILogger logger, LoopBackoff? backoff = null, TimeProvider? time = null)
    {
        Time = time ?? TimeProvider.System;
        _runner = new LoopRunner(GetType().Name, logger, backoff, Time);
    }

    /// <summary>The clock the loop waits by.</summary>
    protected TimeProvider Time { get; }

    /// <summary>Wait before the first pass (when it does not run at start).</summary>
    protected virtual TimeSpan FirstDelay => TimeSpan.Zero;

    /// <summary>
    /// Whether the first pass runs inside <see cref="StartAsync"/>, so the host serves nothing before it: for work
    /// that must precede serving when it can (cleaning up after a crash). A failure there does not stop the start;
    /// the loop backs off and tries again in the background.
    /// </summary>
    protected virtual bool FirstPassAtStart => false;

    /// <summary>One pass; returns the wait before the next, or <see cref="Done"/>.</summary>
    protected abstract Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken);

    /// <summary>Runs once after the loop has stopped for shutdown (write out what was gathered, give up a lease); failures are logged and counted like a pass's.</summary>
    protected virtual Task RunLastPassAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        if (FirstPassAtStart)
        {
            _afterFirstPass = await _runner.PassAsync(RunPassAsync, cancellationToken);
        }
        await base.StartAsync(cancellationToken);
    }

    protected sealed override Task ExecuteAsync(CancellationToken stoppingToken) =>
        _runner.RunAsync(RunPassAsync, stoppingToken, _afterFirstPass ?? FirstDelay);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await _runner.PassAsync(async ct =>
        {
            await RunLastPassAsync(ct);
            return Done;
        }, cancellationToken);
    }
}

using Lifeline.ServiceDefaults.Hosting;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>
/// At start, before the service serves: fails the disaster-recovery runs left RUNNING by an instance that died. If it
/// cannot yet, it tries again in the background (meanwhile a run that blocks a new one is checked when it does).
/// </summary>
public sealed class DrOrphanSweep(DrRunCoordinator coordinator, ILogger<DrOrphanSweep> logger) : BackgroundLoop(logger)
{
    protected override bool FirstPassAtStart => true;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await coordinator.FailOrphansAsync(stoppingToken);
        return Done;
    }
}

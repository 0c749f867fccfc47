namespace Lifeline.Worker.Internal;

/// <summary>
/// Brings an offline worker back: while offline, probes the gateway every backoff step (full jitter, at most
/// <see cref="RetryPolicy.MaxDelay"/>) through <see cref="LeaseKeeper.ProbeAsync"/>; once an answer has moved the
/// monitor to syncing, replays the journal (<see cref="OutcomeDelivery.SyncAsync"/>), which ends connected or offline
/// again. Runs until cancelled.
/// </summary>
internal sealed class Reconnector(ConnectionMonitor monitor, LeaseKeeper leaseKeeper, OutcomeDelivery delivery, RetryPolicy policy)
{
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                if (monitor.State is not (ConnectionState.Offline or ConnectionState.Syncing))
                {
                    await monitor.WhenOffline.WaitAsync(cancellationToken).ConfigureAwait(false);
                }

                for (var step = 0; monitor.State == ConnectionState.Offline; step++)
                {
                    await Task.Delay(policy.Jittered(Math.Min(step, 30), Random.Shared.NextDouble()), cancellationToken).ConfigureAwait(false);
                    if (monitor.State == ConnectionState.Offline)
                    {
                        await leaseKeeper.ProbeAsync(cancellationToken).ConfigureAwait(false);
                    }
                }

                if (monitor.State == ConnectionState.Syncing)
                {
                    await delivery.SyncAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The worker is stopping; what is journaled stays for the next run.
        }
    }
}

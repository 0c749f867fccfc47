using Grpc.Core;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Logging;

namespace Lifeline.ServiceDefaults.Leadership;

/// <summary>
/// A background loop that works only while this instance holds its role: each pass waits for a term and runs under a
/// token that is cancelled when the term ends. A term ending in the middle of a pass is not a failure: the loop waits
/// for the next term. Everything else is the <see cref="BackgroundLoop"/> policy.
/// </summary>
public abstract class LeaderLoop(LeaderElection leader, ILogger logger, LoopBackoff? backoff = null, TimeProvider? time = null)
    : BackgroundLoop(logger, backoff, time)
{
    /// <summary>The election this loop works under.</summary>
    protected LeaderElection Leader { get; } = leader;

    /// <summary>One pass within <paramref name="term"/>; <paramref name="ct"/> is cancelled when the term ends or the service stops.</summary>
    protected abstract Task<TimeSpan> RunTermPassAsync(LeaderTerm term, CancellationToken ct);

    protected sealed override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        var term = await Leader.WaitForTermAsync(stoppingToken);
        using var during = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, term.Lost);
        try
        {
            return await RunTermPassAsync(term, during.Token);
        }
        catch (Exception e) when (term.Lost.IsCancellationRequested && !stoppingToken.IsCancellationRequested
            && e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            return TimeSpan.Zero; // the term ended: the next pass waits for the next one
        }
    }
}

using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Microsoft.Extensions.Logging;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Worker.Internal;

/// <summary>
/// Keeps the leases of running tasks alive: every second it extends those not extended (by a progress report or by
/// itself) for a third of the lease. While the worker is offline it leaves that to <see cref="ProbeAsync"/>, which the
/// <see cref="Reconnector"/> calls every backoff step: it extends the lease of every task held (running or journaled),
/// so the leases are renewed the moment the network returns, and its first answer ends the offline state.
/// </summary>
internal sealed partial class LeaseKeeper(
    WorkerConnection connection,
    ConnectionMonitor monitor,
    OutcomeJournal journal,
    Heartbeats heartbeats,
    Func<bool> registered,
    LifelineWorkerOptions options,
    Func<IReadOnlyCollection<TaskContext>> held,
    ILogger logger)
{
    /// <summary>Extends due leases every second until cancelled (not while offline).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                if (monitor.State == ConnectionState.Offline)
                {
                    continue;
                }

                var due = held().Where(c => IsHeld(c) && c.SinceLeaseExtended >= options.LeaseDuration / 3).ToList();
                if (due.Count > 0)
                {
                    await Task.WhenAll(due.Select(c => ExtendAsync(c, cancellationToken))).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Shutting down.
        }
    }

    /// <summary>
    /// One probe while offline: extends, at once and in parallel, the lease of every task this worker holds — running,
    /// or with its outcome in the journal — so the leases are alive the moment the network returns; with none, a unary
    /// heartbeat. Every answer and failure goes to the connection monitor; the first answer moves it to syncing.
    /// </summary>
    public async Task ProbeAsync(CancellationToken cancellationToken)
    {
        var running = held().Where(IsHeld).ToList();
        var journaled = journal.Snapshot()
            .Where(e => e.IsOutcome && running.All(c => c.TaskId != e.TaskId))
            .Select(e => (e.TaskId, e.FencingToken))
            .Distinct()
            .ToList();
        if (running.Count == 0 && journaled.Count == 0)
        {
            if (registered())
            {
                await heartbeats.ProbeAsync(cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        await Task.WhenAll(running.Select(c => ExtendAsync(c, cancellationToken))
            .Concat(journaled.Select(j => ExtendJournaledAsync(j.TaskId, j.FencingToken, cancellationToken)))).ConfigureAwait(false);
    }

    /// <summary>Extends the lease of a task whose outcome waits in the journal; a refusal only tells the monitor the queue answered.</summary>
    private async Task ExtendJournaledAsync(string taskId, long fencingToken, CancellationToken cancellationToken)
    {
        var started = monitor.Timestamp;
        try
        {
            await connection.ExtendLeaseAsync(
                new ExtendLeaseRequest { TaskId = taskId, FencingToken = fencingToken, LeaseDuration = Duration.FromTimeSpan(options.LeaseDuration) },
                connection.CallOptions(cancellationToken)).ConfigureAwait(false);
            monitor.ReportSuccess($"probe: lease of journaled task {taskId} extended");
        }
        catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
        {
            if (RpcErrors.IsTransient(ex))
            {
                monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (probe: ExtendLease)", started);
            }
            else
            {
                monitor.ReportSuccess($"probe: the queue answered for journaled task {taskId} ({ex.StatusCode})");
            }
        }
    }

    private static bool IsHeld(TaskContext context) =>
        context.CancellationReason is not (TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost);

    private async Task ExtendAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var started = monitor.Timestamp;
        try
        {
            await connection.ExtendLeaseAsync(
                new ExtendLeaseRequest
                {
                    TaskId = context.TaskId,
                    FencingToken = context.FencingToken,
                    LeaseDuration = Duration.FromTimeSpan(options.LeaseDuration),
                },
                connection.CallOptions(cancellationToken)).ConfigureAwait(false);
            context.MarkLeaseExtended();
            monitor.ReportSuccess($"lease of task {context.TaskId} extended");
        }
        catch (RpcException ex) when (!cancellationToken.IsCancellationRequested && RpcErrors.LeaseIsGone(ex))
        {
            monitor.ReportSuccess("the queue answered");
            LogLeaseLost(context.TaskId, RpcErrors.Describe(ex));
            context.Cancel(TaskCancellationReason.LeaseLost);
        }
        catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
        {
            if (RpcErrors.IsTransient(ex))
            {
                monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (ExtendLease)", started);
            }
            else
            {
                monitor.ReportSuccess("the queue answered");
            }

            LogLeaseNotExtended(context.TaskId, RpcErrors.Describe(ex));
        }
    }

    [LoggerMessage(7115, LogLevel.Warning, "Task {TaskId}: lease lost ({Error}); telling its handler")]
    private partial void LogLeaseLost(string taskId, string error);

    [LoggerMessage(7116, LogLevel.Debug, "Task {TaskId}: lease not extended: {Error}")]
    private partial void LogLeaseNotExtended(string taskId, string error);
}

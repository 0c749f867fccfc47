using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Microsoft.Extensions.Logging;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Worker.Internal;

/// <summary>
/// Keeps the leases of running tasks alive: every second it extends those not extended (by a progress report or by
/// itself) for a third of the lease. While the worker is offline it leaves that to <see cref="ProbeAsync"/>, which the
/// <see cref="Reconnector"/> calls every backoff step: it extends the lease of every task held, so the leases are
/// renewed the moment the network returns, and its first answer ends the offline state.
/// </summary>
internal sealed partial class LeaseKeeper(
    WorkerConnection connection,
    ConnectionMonitor monitor,
    OutcomeJournal journal,
    LifelineWorkerOptions options,
    Func<IReadOnlyCollection<TaskContext>> held,
    ILogger logger)
{
    // A probe with no task held and nothing journaled asks for a task that does not exist: any answer will do.
    private const string NoTask = "00000000-0000-0000-0000-000000000000";

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
    /// One probe while offline: extends the lease of every task held (at once, in parallel), or, with none held, reads a
    /// journaled task. Every answer and failure goes to the connection monitor; an answer moves it to syncing.
    /// </summary>
    public async Task ProbeAsync(CancellationToken cancellationToken)
    {
        var tasks = held().Where(IsHeld).ToList();
        if (tasks.Count > 0)
        {
            await Task.WhenAll(tasks.Select(c => ExtendAsync(c, cancellationToken))).ConfigureAwait(false);
            return;
        }

        var taskId = journal.Snapshot() is [var first, ..] ? first.TaskId : NoTask;
        try
        {
            await connection.Queue.GetTaskAsync(new GetTaskRequest { TaskId = taskId }, connection.CallOptions(cancellationToken)).ConfigureAwait(false);
            monitor.ReportSuccess("probe answered");
        }
        catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
        {
            if (RpcErrors.IsTransient(ex))
            {
                monitor.ReportTransientFailure(RpcErrors.Describe(ex));
            }
            else
            {
                monitor.ReportSuccess($"probe answered ({ex.StatusCode})");
            }
        }
    }

    private static bool IsHeld(TaskContext context) =>
        context.CancellationReason is not (TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost);

    private async Task ExtendAsync(TaskContext context, CancellationToken cancellationToken)
    {
        try
        {
            await connection.Queue.ExtendLeaseAsync(
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
                monitor.ReportTransientFailure(RpcErrors.Describe(ex));
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

using Grpc.Core;
using Lifeline.Checkpoint.V1;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.V1;
using Lifeline.Recovery.Telemetry;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Telemetry;
using System.Diagnostics;
using QueueTask = Lifeline.Queue.V1.Task;
using QueueRecoveryAction = Lifeline.Queue.V1.RecoveryAction;

namespace Lifeline.Recovery.InFlight;

/// <summary>How one attempt to recover a task ended.</summary>
public enum RecoveryResult
{
    /// <summary>Requeued or dead-lettered now (an action was recorded).</summary>
    Recovered,
    /// <summary>The holder is alive with a current lease: left alone.</summary>
    HolderAlive,
    /// <summary>Someone else already moved the task on (completed, re-leased, recovered): nothing to do.</summary>
    NothingToDo,
    /// <summary>The call failed (a dependency unreachable); recorded as a failed action; the next scan retries.</summary>
    Failed,
}

/// <summary>
/// Recovers one in-flight task through the queue's fenced <c>RecoverTask</c>: with the lease token
/// recovery saw (a task that moved on is refused, not hurt), refused by the queue itself while its
/// holder is alive with a current lease, carrying the workflow's latest valid checkpoint so the
/// next worker resumes from it. Records the action under the leader's token.
/// </summary>
public sealed partial class TaskRecoverer(SuiteClients clients, ActionLog log, TimeProvider time, RecoveryTelemetry telemetry, ILogger<TaskRecoverer> logger)
{
    /// <summary>Recovers one task (see the class), in a span of its own whose children are the calls to the other services.</summary>
    public async Task<(RecoveryResult Result, ActionRecord? Action)> RecoverAsync(
        string tenant, QueueTask task, RecoveryTrigger trigger, DateTime detectedAt, LeaderTerm term, CancellationToken ct)
    {
        using var activity = RecoveryTelemetry.Source.StartActivity("recovery.recover_task");
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(TaskTrace.TenantTag, tenant);
            activity.SetTag(TaskTrace.TaskIdTag, task.Id);
            activity.SetTag(TaskTrace.WorkerIdTag, task.AssignedWorkerId);
            activity.SetTag(TaskTrace.TaskTypeTag, task.Type);
            activity.SetTag(RecoveryTelemetry.TriggerTag, RecoveryTelemetry.TriggerName(trigger));
        }
        using var scope = logger.BeginScope(new TaskScope(tenant, Guid.TryParse(task.Id, out var id) ? id : null, task.AssignedWorkerId));
        var (result, action) = await RecoverTracedAsync(tenant, task, trigger, detectedAt, term, ct);
        activity?.SetTag(RecoveryTelemetry.ResultTag, result.ToString());
        if (result == RecoveryResult.Recovered)
        {
            // The interval the action log keeps (detected → recovered), so the metric and the record agree.
            telemetry.Recovered(trigger, action?.DetectedAt ?? detectedAt, action?.RecoveredAt ?? time.GetUtcNow().UtcDateTime);
        }
        else if (result == RecoveryResult.Failed)
        {
            activity?.SetStatus(ActivityStatusCode.Error, "recovery failed");
            telemetry.Failed(trigger);
        }
        return (result, action);
    }

    private async Task<(RecoveryResult Result, ActionRecord? Action)> RecoverTracedAsync(
        string tenant, QueueTask task, RecoveryTrigger trigger, DateTime detectedAt, LeaderTerm term, CancellationToken ct)
    {
        var (checkpointId, checkpointNote) = await LatestCheckpointAsync(tenant, task.WorkflowId, ct);
        var code = trigger switch
        {
            RecoveryTrigger.WorkerLost => "WORKER_LOST",
            RecoveryTrigger.WorkerGone => "WORKER_GONE",
            RecoveryTrigger.LeaseExpired => "LEASE_EXPIRED",
            RecoveryTrigger.NotStarted => "NOT_STARTED",
            _ => "TIMED_OUT",
        };
        var reason = trigger switch
        {
            RecoveryTrigger.WorkerLost => $"worker {task.AssignedWorkerId} was announced lost by the registry",
            RecoveryTrigger.WorkerGone => $"worker {task.AssignedWorkerId} is offline, deregistered or unknown",
            RecoveryTrigger.LeaseExpired => "the lease expired without an outcome",
            RecoveryTrigger.NotStarted => $"assigned at {task.AssignedAt?.ToDateTime():O} and never started; holder gone",
            _ => $"timed out after {task.TimeoutSeconds} s",
        } + (checkpointId is null ? "" : $"; resumes from checkpoint {checkpointId}") + (checkpointNote is null ? "" : $"; {checkpointNote}");
        var request = new RecoverTaskRequest
        {
            TaskId = task.Id,
            FencingToken = task.FencingToken,
            Action = QueueRecoveryAction.Requeue,
            Reason = new ErrorDetail { Code = code, Message = reason, Retryable = true, Severity = Severity.Medium },
            ResumeCheckpointId = checkpointId?.ToString() ?? "",
            CountRetry = true,
        };

        RecoverTaskResponse response;
        try
        {
            response = await clients.Queue.RecoverTaskAsync(request, ServiceCall.For(tenant, ct));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            return (Reason(e) == "WORKER_STILL_ALIVE" ? RecoveryResult.HolderAlive : RecoveryResult.NothingToDo, null);
        }
        catch (RpcException e) when (e.StatusCode is not StatusCode.Cancelled || !ct.IsCancellationRequested)
        {
            if (e.StatusCode == StatusCode.NotFound)
            {
                return (RecoveryResult.NothingToDo, null);
            }
            LogFailed(logger, task.Id, e.Status.Detail);
            var failed = Record(tenant, task, StatusName(task.Status), StatusName(task.Status), ActionType.Restart, trigger, reason, null, detectedAt, term,
                succeeded: false, error: $"{e.StatusCode}: {e.Status.Detail}");
            await log.RecordAsync(failed, term, ct);
            return (RecoveryResult.Failed, failed);
        }

        if (response.Outcome == RecoverOutcome.AlreadyRecovered && response.Task.Status is not (Queue.V1.TaskStatus.Pending or Queue.V1.TaskStatus.DeadLettered))
        {
            return (RecoveryResult.NothingToDo, null);
        }
        var action = response.Task.Status == Queue.V1.TaskStatus.DeadLettered
            ? ActionType.DeadLetter
            : task.Status == Queue.V1.TaskStatus.Timeout ? ActionType.Retry : checkpointId is null ? ActionType.Restart : ActionType.Resume;
        var record = Record(tenant, task, StatusName(task.Status), StatusName(response.Task.Status), action, trigger, reason, checkpointId, detectedAt, term,
            succeeded: true, error: null);
        // Recorded once per lease: a repeat (AlreadyRecovered, e.g. after a leader change) fills a missing record and adds nothing otherwise.
        // The attempt whose record is kept is the one that counts as having recovered the task: two triggers racing for the same
        // task (the registry's lost-worker event and a scan) count once, under the trigger the record names, and a leader whose
        // term ended before it could record leaves the count to the leader that fills the record.
        return await log.RecordAsync(record, term, ct) ? (RecoveryResult.Recovered, record) : (RecoveryResult.NothingToDo, null);
    }

    /// <summary>The workflow's newest valid, intact checkpoint; none when there is no workflow, no checkpoint or the service can't say.</summary>
    private async Task<(Guid? Id, string? Note)> LatestCheckpointAsync(string tenant, string workflowId, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(workflowId) || !clients.Has("checkpoint"))
        {
            return (null, null);
        }
        try
        {
            var latest = await clients.Checkpoint.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflowId }, ServiceCall.For(tenant, ct, TimeSpan.FromSeconds(10)));
            var note = latest.SkippedCorrupt.Count > 0 ? $"skipped {latest.SkippedCorrupt.Count} corrupt newer checkpoint(s)" : null;
            return (Guid.Parse(latest.Checkpoint.Metadata.Id), note);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return (null, null);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.DataLoss)
        {
            return (null, "every checkpoint of the workflow failed its integrity check; restarting from the beginning");
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            return (null, $"checkpoint service unavailable ({e.StatusCode}); restarting from the beginning");
        }
    }

    private ActionRecord Record(string tenant, QueueTask task, string previous, string next, ActionType action, RecoveryTrigger trigger, string reason,
        Guid? checkpointId, DateTime detectedAt, LeaderTerm term, bool succeeded, string? error)
    {
        var now = time.GetUtcNow().UtcDateTime;
        return new ActionRecord(Guid.CreateVersion7(), tenant, Guid.Parse(task.Id), task.Type, task.WorkflowId, previous, next, action, trigger, reason,
            task.AssignedWorkerId, checkpointId, task.FencingToken, detectedAt > now ? now : detectedAt, now, succeeded, error, term.Term);
    }

    /// <summary>The contract's name of a task status, e.g. <c>TASK_STATUS_RUNNING</c>.</summary>
    public static string StatusName(Queue.V1.TaskStatus status) =>
        typeof(Queue.V1.TaskStatus).GetField(status.ToString())?.GetCustomAttributes(typeof(Google.Protobuf.Reflection.OriginalNameAttribute), false)
            .OfType<Google.Protobuf.Reflection.OriginalNameAttribute>().FirstOrDefault()?.Name ?? status.ToString();

    private static string? Reason(RpcException e) =>
        e.GetRpcStatus()?.GetDetail<Google.Rpc.ErrorInfo>()?.Reason;

    [LoggerMessage(EventId = 4004, Level = LogLevel.Warning, Message = "Recovering task {TaskId} failed: {Detail}; the next scan retries")]
    private static partial void LogFailed(ILogger logger, string taskId, string detail);
}

using Google.Rpc;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Data;
using Lifeline.ServiceDefaults.Clients;
using QueueTask = Lifeline.Queue.V1.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.Plans;

/// <summary>What an automatic action did.</summary>
public sealed record ActionOutcome(bool Succeeded, string Result)
{
    public static ActionOutcome Ok(string result) => new(true, result);
    public static ActionOutcome Failed(string result) => new(false, result);
}

/// <summary>
/// Performs the automatic plan actions against the suite, through the contracts only: retry (queue),
/// rollback (checkpoint service) and abort (queue). Every action is safe to repeat: a second retry of a
/// failed task finds the copy by its idempotency key, a redriven or recovered task is no longer in the
/// state the first call acted on, and a cancelled task stays cancelled.
/// </summary>
public sealed class PlanActionRunner(SuiteClients clients)
{
    /// <summary>Time limit of one call to another service (a rollback may take longer: it streams).</summary>
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RollbackTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Idempotency key of the copy a retry enqueues of a failed or cancelled task.</summary>
    public static string RetryKey(Guid taskId, Guid planId) => $"retry-of-{taskId}-{planId}";

    /// <summary>
    /// Re-runs the task through the queue, by its state: dead-lettered → redriven; timed out, or assigned/running
    /// with its holder gone → recovered to pending (resuming from the workflow's latest valid checkpoint when
    /// there is one); failed/cancelled → a copy is enqueued (same type, payload, priority, retry settings,
    /// workflow; idempotency key <see cref="RetryKey"/>); pending/completed → nothing to do.
    /// </summary>
    public async Task<ActionOutcome> RetryAsync(RecoveryPlanEntity plan, CancellationToken ct)
    {
        var taskId = plan.TaskId!.Value;
        var task = await GetTaskAsync(plan.TenantId, taskId, ct);
        if (task is null)
        {
            return ActionOutcome.Failed($"task {taskId} was not found in tenant '{plan.TenantId}'");
        }
        var call = ServiceCall.For(plan.TenantId, ct, CallTimeout);
        switch (task.Status)
        {
            case TaskStatus.DeadLettered:
                var redriven = await clients.Queue.RedriveDeadLettersAsync(new RedriveDeadLettersRequest { TaskIds = { task.Id } }, call);
                return redriven.TaskIds.Contains(task.Id)
                    ? ActionOutcome.Ok($"redrove dead-lettered task {task.Id}: it is pending again with a fresh retry budget")
                    : ActionOutcome.Failed($"the queue did not redrive task {task.Id}");
            case TaskStatus.Timeout or TaskStatus.Assigned or TaskStatus.Running:
                return await RecoverAsync(plan, task, ct);
            case TaskStatus.Failed or TaskStatus.Cancelled:
                var spec = new TaskSpec
                {
                    Type = task.Type,
                    Payload = task.Payload,
                    Priority = task.Priority,
                    MaxRetries = task.MaxRetries,
                    TimeoutSeconds = task.TimeoutSeconds,
                    RetryPolicy = task.RetryPolicy,
                    WorkflowId = task.WorkflowId,
                    IdempotencyKey = RetryKey(taskId, plan.Id),
                };
                var enqueued = await clients.Queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = spec }, call);
                return ActionOutcome.Ok(enqueued.Created
                    ? $"enqueued task {enqueued.Task.Id} as a copy of {Name(task.Status)} task {task.Id} (idempotency key {spec.IdempotencyKey})"
                    : $"task {enqueued.Task.Id}, the copy of task {task.Id} this plan enqueued before, exists already ({Name(enqueued.Task.Status)}); nothing doubled");
            case TaskStatus.Pending:
                return ActionOutcome.Ok($"nothing to do: task {task.Id} is pending already and will run again");
            case TaskStatus.Completed:
                return ActionOutcome.Ok($"nothing to do: task {task.Id} has completed");
            default:
                return ActionOutcome.Failed($"task {task.Id} is in an unknown state ({task.Status})");
        }
    }

    private async Task<ActionOutcome> RecoverAsync(RecoveryPlanEntity plan, QueueTask task, CancellationToken ct)
    {
        var resumeFrom = await LatestValidCheckpointAsync(plan.TenantId, task.WorkflowId, ct);
        try
        {
            var recovered = await clients.Queue.RecoverTaskAsync(new RecoverTaskRequest
            {
                TaskId = task.Id,
                FencingToken = task.FencingToken,
                Action = RecoveryAction.Requeue,
                Reason = new ErrorDetail
                {
                    Code = "RECOVERY_PLAN_RETRY",
                    Message = $"retried by recovery plan {plan.Id} for error {plan.ErrorCode}",
                    Retryable = true,
                    Severity = (Severity)plan.Severity,
                },
                ResumeCheckpointId = resumeFrom,
            }, ServiceCall.For(plan.TenantId, ct, CallTimeout));
            var from = resumeFrom.Length > 0 ? $", resuming from checkpoint {resumeFrom}" : "";
            return recovered.Outcome switch
            {
                RecoverOutcome.Requeued => ActionOutcome.Ok($"recovered {Name(task.Status)} task {task.Id} to pending (fencing token {task.FencingToken}){from}"),
                RecoverOutcome.AlreadyRecovered => ActionOutcome.Ok($"task {task.Id} was recovered from this lease before; nothing changed"),
                RecoverOutcome.DeadLettered => ActionOutcome.Failed($"task {task.Id} had no retries left: the queue dead-lettered it (MAX_RETRIES_EXCEEDED)"),
                _ => ActionOutcome.Failed($"the queue answered RecoverTask with {recovered.Outcome}"),
            };
        }
        catch (RpcException e) when (Reason(e) == "WORKER_STILL_ALIVE")
        {
            return ActionOutcome.Ok($"nothing to do: task {task.Id} is {Name(task.Status)} under worker {task.AssignedWorkerId}, which is alive and holds a current lease");
        }
    }

    /// <summary>Rolls the plan's workflow back to its latest valid checkpoint (FULL, saving the current head first), reading the stream to its result.</summary>
    public async Task<ActionOutcome> RollbackAsync(RecoveryPlanEntity plan, CancellationToken ct)
    {
        using var call = clients.Checkpoint.Rollback(new RollbackRequest
        {
            WorkflowId = plan.WorkflowId,
            LatestValid = true,
            Strategy = RollbackStrategy.Full,
            CreateBackup = true,
        }, ServiceCall.For(plan.TenantId, ct, RollbackTimeout));
        RollbackResult? result = null;
        while (await call.ResponseStream.MoveNext(ct))
        {
            if (call.ResponseStream.Current.EventCase == RollbackResponse.EventOneofCase.Result)
            {
                result = call.ResponseStream.Current.Result;
            }
        }
        if (result is null)
        {
            return ActionOutcome.Failed($"the checkpoint service ended the rollback of workflow '{plan.WorkflowId}' without a result");
        }
        if (result.Errors.Count > 0)
        {
            return ActionOutcome.Failed($"rollback of workflow '{plan.WorkflowId}' refused, nothing changed: {string.Join("; ", result.Errors)}");
        }
        var head = result.NewHeadId.Length > 0 ? $"new head {result.NewHeadId}" : "nothing changed (the head already equals it)";
        var backup = result.BackupCheckpointId.Length > 0 ? $"; the previous head is saved as checkpoint {result.BackupCheckpointId}" : "";
        return ActionOutcome.Ok(
            $"rolled workflow '{plan.WorkflowId}' back to checkpoint {result.TargetCheckpointId}: {head}{(result.Verified ? " (verified)" : "")}{backup}");
    }

    /// <summary>Cancels the task; one that has already ended is left as it is.</summary>
    public async Task<ActionOutcome> AbortAsync(RecoveryPlanEntity plan, CancellationToken ct)
    {
        var taskId = plan.TaskId!.Value.ToString();
        try
        {
            var cancelled = await clients.Queue.CancelTaskAsync(new CancelTaskRequest
            {
                TaskId = taskId,
                Reason = Truncate($"aborted by recovery plan {plan.Id} for error {plan.ErrorCode}: {plan.ErrorMessage}", 1024),
            }, ServiceCall.For(plan.TenantId, ct, CallTimeout));
            var cascade = cancelled.CascadedCancellations > 0 ? $" and {cancelled.CascadedCancellations} dependent task(s)" : "";
            return ActionOutcome.Ok($"cancelled task {taskId}{cascade}");
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return ActionOutcome.Failed($"task {taskId} was not found in tenant '{plan.TenantId}'");
        }
        catch (RpcException e) when (Reason(e) == "INVALID_TASK_STATE")
        {
            var task = await GetTaskAsync(plan.TenantId, plan.TaskId.Value, ct);
            return task is null
                ? ActionOutcome.Failed($"task {taskId} was not found in tenant '{plan.TenantId}'")
                : ActionOutcome.Ok($"nothing to cancel: task {taskId} has already ended ({Name(task.Status)})");
        }
    }

    private async Task<QueueTask?> GetTaskAsync(string tenant, Guid taskId, CancellationToken ct)
    {
        try
        {
            return (await clients.Queue.GetTaskAsync(new GetTaskRequest { TaskId = taskId.ToString() }, ServiceCall.For(tenant, ct, CallTimeout))).Task;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>The workflow's newest valid, intact checkpoint; empty when there is no workflow or no such checkpoint.</summary>
    private async Task<string> LatestValidCheckpointAsync(string tenant, string workflowId, CancellationToken ct)
    {
        if (workflowId.Length == 0)
        {
            return "";
        }
        try
        {
            var latest = await clients.Checkpoint.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflowId },
                ServiceCall.For(tenant, ct, CallTimeout));
            return latest.Checkpoint.Metadata.Id;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return "";
        }
    }

    internal static string? Reason(RpcException e) => e.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason;

    private static string Name(TaskStatus status) => status.ToString().ToLowerInvariant() switch
    {
        "deadlettered" => "dead-lettered",
        var name => name,
    };

    private static string Truncate(string value, int max) => value.Length <= max ? value : value[..(max - 1)] + "…";
}

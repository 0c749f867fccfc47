using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Recovery.Plans;

/// <summary>
/// Executes recovery plans: actions in order, each step persisted (status, start, end, duration, result)
/// before and after it runs, until the plan ends or reaches a manual/escalate step that waits for an
/// operator (<see cref="ResolveAsync"/> continues it). Only one execution of a plan runs at a time: claiming
/// the plan (READY → RUNNING) and every later write are guarded by the row's <c>xmin</c>, so of two
/// concurrent Execute calls one runs and the other is ABORTED with nothing done. Once claimed, a plan runs
/// to its next stop even if the caller goes away (the host's stopping token, not the call's, cancels it). A
/// plan left RUNNING by an instance that stopped mid-action may be executed again after
/// <see cref="StaleExecutionAfter"/>; the interrupted action then runs again (every action is safe to repeat).
/// </summary>
public sealed partial class RecoveryPlanExecutor(
    IDbContextFactory<RecoveryDbContext> contexts, PlanActionRunner runner, NotificationOutbox outbox, IHostApplicationLifetime lifetime,
    TimeProvider time, ILogger<RecoveryPlanExecutor> logger)
{
    public const string EscalatedEvent = "recovery.plan.escalated";

    /// <summary>A RUNNING plan untouched this long is taken to be abandoned by an instance that stopped.</summary>
    public static readonly TimeSpan StaleExecutionAfter = TimeSpan.FromMinutes(10);

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Executes the tenant's plan; another tenant's is NOT_FOUND and nothing runs.</summary>
    public async Task<RecoveryPlan> ExecuteAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var plan = await RecoveryPlanStore.FindAsync(db, tenant, id, ct);
        var now = time.Now();
        switch ((PlanStatus)plan.Status)
        {
            case PlanStatus.AwaitingApproval:
                throw new ApprovalRequiredException(id);
            case PlanStatus.Running when plan.UpdatedAt > now - StaleExecutionAfter:
                throw Busy(id);
            case PlanStatus.Ready or PlanStatus.Running:
                break;
            default:
                // Waiting for an operator, or finished: nothing to run; the plan as it stands.
                return plan.ToProto();
        }
        plan.Status = (int)PlanStatus.Running;
        var actions = PlanRecords.ParseActions(plan.Actions);
        await SaveAsync(db, plan, actions, ct);
        LogExecuting(logger, id, plan.ErrorCode, plan.Source);
        return await RunAsync(db, plan, actions, lifetime.ApplicationStopping);
    }

    /// <summary>
    /// Resolves the manual/escalate action the tenant's plan waits on; succeeded → execution continues, failed → the plan
    /// ends. Another tenant's plan is NOT_FOUND.
    /// </summary>
    public async Task<RecoveryPlan> ResolveAsync(string tenant, Guid id, ResolveManualActionRequest request, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var plan = await RecoveryPlanStore.FindAsync(db, tenant, id, ct);
        var actions = PlanRecords.ParseActions(plan.Actions);
        if (request.ActionIndex >= actions.Count)
        {
            throw ValidationException.For("action_index", $"the plan has {actions.Count} action(s) (0 to {actions.Count - 1}); got {request.ActionIndex}");
        }
        var action = actions[request.ActionIndex];
        if (plan.Status != (int)PlanStatus.Waiting || action.Status != PlanActionStatus.Waiting)
        {
            throw new InvalidPlanStateException(id, action.Status.ToString(),
                $"Action {request.ActionIndex} of recovery plan {id} is {action.Status} and the plan is {(PlanStatus)plan.Status}: only a waiting manual or escalate action can be resolved.");
        }
        Finish(action, request.Succeeded ? PlanActionStatus.Succeeded : PlanActionStatus.Failed,
            action.Result + (request.Succeeded ? "; resolved as succeeded" : "; resolved as failed"));
        action.ResolvedBy = request.ResolvedBy.Trim();
        action.Resolution = request.Resolution;
        LogResolved(logger, id, request.ActionIndex, action.ResolvedBy, request.Succeeded);
        if (!request.Succeeded)
        {
            for (var i = request.ActionIndex + 1; i < actions.Count; i++)
            {
                actions[i].Status = PlanActionStatus.Skipped;
                actions[i].Result = $"not run: action {request.ActionIndex} was resolved as failed";
            }
            plan.Status = (int)PlanOutcome.Final(actions);
            await SaveAsync(db, plan, actions, ct);
            return plan.ToProto();
        }
        plan.Status = (int)PlanStatus.Running;
        await SaveAsync(db, plan, actions, ct);
        return await RunAsync(db, plan, actions, lifetime.ApplicationStopping);
    }

    private async Task<RecoveryPlan> RunAsync(RecoveryDbContext db, RecoveryPlanEntity plan, List<PlanAction> actions, CancellationToken ct)
    {
        for (var i = 0; i < actions.Count; i++)
        {
            var action = actions[i];
            if (action.Status is not (PlanActionStatus.Pending or PlanActionStatus.Running))
            {
                continue;
            }
            if (PlanBuilder.FallbackOf(actions, i) is { } covers && !actions.Take(covers).Any(a => a.Status == PlanActionStatus.Failed))
            {
                action.Status = PlanActionStatus.Skipped;
                action.Result = "not needed: the actions before it succeeded";
                await SaveAsync(db, plan, actions, ct);
                continue;
            }
            action.Status = PlanActionStatus.Running;
            action.StartedAt = Timestamp.FromDateTime(time.Now());
            action.Result = "";
            await SaveAsync(db, plan, actions, ct);

            if (action.Type is PlanActionType.Manual or PlanActionType.Escalate)
            {
                action.Status = PlanActionStatus.Waiting;
                action.Result = action.Type == PlanActionType.Manual
                    ? "waiting for an operator to do this and resolve the step"
                    : Escalate(db, plan, actions, i);
                plan.Status = (int)PlanStatus.Waiting;
                await SaveAsync(db, plan, actions, ct);
                outbox.Wake();
                LogWaiting(logger, plan.Id, i, PlanOutcome.Name(action.Type));
                return plan.ToProto();
            }

            var outcome = await RunActionAsync(plan, action.Type, ct);
            Finish(action, outcome.Succeeded ? PlanActionStatus.Succeeded : PlanActionStatus.Failed, outcome.Result);
            LogActionDone(logger, plan.Id, i, PlanOutcome.Name(action.Type), outcome.Succeeded, outcome.Result);
            await SaveAsync(db, plan, actions, ct);
        }
        plan.Status = (int)PlanOutcome.Final(actions);
        await SaveAsync(db, plan, actions, ct);
        LogFinished(logger, plan.Id, ((PlanStatus)plan.Status).ToString());
        return plan.ToProto();
    }

    private async Task<ActionOutcome> RunActionAsync(RecoveryPlanEntity plan, PlanActionType type, CancellationToken ct)
    {
        try
        {
            return type switch
            {
                PlanActionType.Retry => await runner.RetryAsync(plan, ct),
                PlanActionType.Rollback => await runner.RollbackAsync(plan, ct),
                PlanActionType.Abort => await runner.AbortAsync(plan, ct),
                PlanActionType.Skip => ActionOutcome.Ok("skipped: the task is left as it is"),
                _ => ActionOutcome.Failed($"unknown action type {type}"),
            };
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            var reason = PlanActionRunner.Reason(e);
            return ActionOutcome.Failed($"{e.StatusCode}{(reason is null ? "" : $" {reason}")}: {e.Status.Detail}");
        }
        catch (InvalidOperationException e)
        {
            // e.g. the service the action needs is not configured (services:<name>:grpc:0)
            return ActionOutcome.Failed(e.Message);
        }
    }

    /// <summary>Adds the escalation's notification rows to this save (written atomically with the step); returns the step's result text.</summary>
    private string Escalate(RecoveryDbContext db, RecoveryPlanEntity plan, List<PlanAction> actions, int index)
    {
        var error = plan.Error();
        var payload = JsonSerializer.Serialize(new
        {
            Event = EscalatedEvent,
            PlanId = plan.Id.ToString(),
            ActionIndex = index,
            Error = new
            {
                error.Code,
                Category = error.Category.ToString(),
                Severity = error.Severity.ToString(),
                error.Message,
                error.TaskId,
                error.WorkflowId,
                error.TenantId,
            },
            Actions = actions.Select((a, i) => new { Index = i, Type = PlanOutcome.Name(a.Type), Status = a.Status.ToString(), a.Result }),
            Resolve = $"POST /api/v1/recovery/plans/{plan.Id}/actions/{index}:resolve",
        }, Json);
        var rows = outbox.Add(db, [], EscalatedEvent, payload);
        return rows.Count == 0
            ? "no webhook is configured (Recovery:Webhooks): nobody was notified; waiting for an operator to resolve the step"
            : $"escalated to webhook(s) {string.Join(", ", rows.Select(r => r.Webhook))} (notification(s) {string.Join(", ", rows.Select(r => r.Id))}); waiting for an operator to resolve the step";
    }

    private void Finish(PlanAction action, PlanActionStatus status, string result)
    {
        var now = time.Now();
        action.Status = status;
        action.Result = result;
        action.FinishedAt = Timestamp.FromDateTime(now);
        action.Duration = action.StartedAt is null ? Duration.FromTimeSpan(TimeSpan.Zero) : Duration.FromTimeSpan(now - action.StartedAt.ToDateTime());
    }

    /// <summary>Writes the plan guarded by its row version: a concurrent writer won → ABORTED, nothing of this call written.</summary>
    private async Task SaveAsync(RecoveryDbContext db, RecoveryPlanEntity plan, List<PlanAction> actions, CancellationToken ct)
    {
        var status = (PlanStatus)plan.Status;
        plan.Actions = PlanRecords.ActionsJson(actions);
        plan.NextSteps = [.. PlanOutcome.NextSteps(plan.Id, status, actions, plan.Error())];
        plan.UpdatedAt = time.Now();
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateConcurrencyException)
        {
            throw Busy(plan.Id);
        }
    }

    private static ConcurrencyConflictException Busy(Guid id) =>
        new($"Recovery plan {id} is being executed or resolved by another call; read it with GetRecoveryPlan.", TimeSpan.FromSeconds(1),
            "PLAN_BUSY");

    [LoggerMessage(EventId = 4201, Level = LogLevel.Information, Message = "Executing recovery plan {PlanId} for error {ErrorCode} ({Source})")]
    private static partial void LogExecuting(ILogger logger, Guid planId, string errorCode, string source);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Information, Message = "Recovery plan {PlanId} action {Index} ({Type}): succeeded={Succeeded}: {Result}")]
    private static partial void LogActionDone(ILogger logger, Guid planId, int index, string type, bool succeeded, string result);

    [LoggerMessage(EventId = 4203, Level = LogLevel.Information, Message = "Recovery plan {PlanId} waits on action {Index} ({Type}) for an operator")]
    private static partial void LogWaiting(ILogger logger, Guid planId, int index, string type);

    [LoggerMessage(EventId = 4204, Level = LogLevel.Information, Message = "Recovery plan {PlanId} action {Index} resolved by {ResolvedBy}: succeeded={Succeeded}")]
    private static partial void LogResolved(ILogger logger, Guid planId, int index, string resolvedBy, bool succeeded);

    [LoggerMessage(EventId = 4205, Level = LogLevel.Information, Message = "Recovery plan {PlanId} finished: {Status}")]
    private static partial void LogFinished(ILogger logger, Guid planId, string status);
}

using Grpc.Core;
using Lifeline.Checkpoint.V1;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Npgsql;
using static Lifeline.Recovery.Tests.RecoveryPlanTestSupport;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Recovery plans: built from the strategy matrix (or a custom plan per code), refused on bad input with
/// every field named, and executed for real against the queue and the checkpoint service.
/// </summary>
public sealed class RecoveryPlanTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private RecoveryPlanService.RecoveryPlanServiceClient Plans => env.PlanClient();

    private Task<long> PlanRowsAsync() => env.ScalarAsync<long>("SELECT count(*) FROM recovery_plans");

    public static TheoryData<ErrorCategory, Severity, PlanActionType[], double[], bool> Matrix => new()
    {
        { ErrorCategory.Transient, Severity.Low, [PlanActionType.Retry, PlanActionType.Escalate], [0.9, 0.5], false },
        { ErrorCategory.Resource, Severity.Medium, [PlanActionType.Retry, PlanActionType.Escalate], [0.6, 0.5], false },
        { ErrorCategory.External, Severity.Low, [PlanActionType.Retry, PlanActionType.Manual], [0.7, 0.6], false },
        { ErrorCategory.Validation, Severity.Low, [PlanActionType.Skip], [0.5], false },
        { ErrorCategory.Validation, Severity.High, [PlanActionType.Manual], [0.8], false },
        { ErrorCategory.Logic, Severity.Low, [PlanActionType.Rollback, PlanActionType.Retry], [0.7, 0.6], true },
        { ErrorCategory.Security, Severity.Low, [PlanActionType.Abort, PlanActionType.Escalate], [0.9, 0.8], true },
        { ErrorCategory.Critical, Severity.Medium, [PlanActionType.Abort, PlanActionType.Escalate], [0.8, 0.9], true },
        { ErrorCategory.Transient, Severity.High, [PlanActionType.Retry, PlanActionType.Escalate], [0.9, 0.5], true },
        { ErrorCategory.External, Severity.Critical, [PlanActionType.Retry, PlanActionType.Manual], [0.7, 0.6], true },
    };

    [Theory(Timeout = TestTimeouts.Default)]
    [MemberData(nameof(Matrix))]
    public async Task Plans_follow_the_category_and_severity_matrix(ErrorCategory category, Severity severity, PlanActionType[] types, double[] confidence,
        bool approval)
    {
        var error = Error(category, severity, code: $"MATRIX_{category}", taskId: Guid.NewGuid().ToString(), workflowId: "wf-matrix");
        var plan = await Plans.CreatePlanAsync(error);

        Assert.Equal(types, plan.Actions.Select(a => a.Type));
        Assert.Equal(confidence, plan.Actions.Select(a => a.Confidence));
        Assert.All(plan.Actions, a => Assert.Equal(PlanActionStatus.Pending, a.Status));
        Assert.Equal(approval, plan.RequiresApproval);
        Assert.Equal(approval ? PlanStatus.AwaitingApproval : PlanStatus.Ready, plan.Status);
        Assert.Equal(approval, plan.Actions.Any(a => a.RequiresApproval));
        // Only actions that change live work carry the approval flag.
        Assert.All(plan.Actions.Where(a => a.Type is PlanActionType.Manual or PlanActionType.Escalate or PlanActionType.Skip), a => Assert.False(a.RequiresApproval));
        Assert.Equal("matrix", plan.Source);
        Assert.Equal(plan.Actions.Sum(a => a.EstimatedDuration.ToTimeSpan().Ticks), plan.EstimatedDuration.ToTimeSpan().Ticks);
        Assert.NotEmpty(plan.NextSteps);

        var stored = await Plans.GetRecoveryPlanAsync(new GetRecoveryPlanRequest { PlanId = plan.Id });
        Assert.Equal(plan, stored.Plan);
        Assert.Equal((int)plan.Status, await env.ScalarAsync<int>("SELECT status FROM recovery_plans WHERE id = @id", ("id", Guid.Parse(plan.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_custom_plan_for_an_error_code_replaces_the_matrix()
    {
        var custom = await env.StartRecoveryAsync(new Dictionary<string, string?>
        {
            ["Recovery:CustomPlans:DISK_FULL:0"] = "manual",
            ["Recovery:CustomPlans:DISK_FULL:1"] = "retry",
        });
        try
        {
            var client = env.PlanClient(custom);
            var plan = await client.CreatePlanAsync(Error(ErrorCategory.Transient, code: "DISK_FULL", taskId: Guid.NewGuid().ToString()));
            Assert.Equal("custom:DISK_FULL", plan.Source);
            Assert.Equal([PlanActionType.Manual, PlanActionType.Retry], plan.Actions.Select(a => a.Type));

            var other = await client.CreatePlanAsync(Error(ErrorCategory.Transient, code: "HTTP_503", taskId: Guid.NewGuid().ToString()));
            Assert.Equal("matrix", other.Source);
            Assert.Equal([PlanActionType.Retry, PlanActionType.Escalate], other.Actions.Select(a => a.Type));
        }
        finally
        {
            await custom.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Invalid_requests_name_every_bad_field_and_write_nothing()
    {
        var before = await PlanRowsAsync();

        var missing = await RefusedAsync(() => Plans.CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest
        {
            Error = new ErrorContext { Code = "", Category = ErrorCategory.Unspecified, TaskId = "not-a-uuid", TenantId = "Bad Tenant" },
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["error.code", "error.category", "error.task_id", "error.tenant_id"], missing.Fields());

        // The chosen plan retries the task: the task is required.
        var noTask = await RefusedAsync(() => Plans.CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest { Error = Error(ErrorCategory.Transient) }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["error.task_id"], noTask.Fields());

        // Rollback needs the workflow, retry the task.
        var logic = await RefusedAsync(() => Plans.CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest { Error = Error(ErrorCategory.Logic) }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["error.task_id", "error.workflow_id"], logic.Fields());

        var noError = await RefusedAsync(() => Plans.CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest()).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["error"], noError.Fields());

        var badApprove = await RefusedAsync(() => Plans.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest { PlanId = "x" }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["plan_id", "approved_by"], badApprove.Fields());

        var badResolve = await RefusedAsync(() => Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = Guid.NewGuid().ToString(), ActionIndex = -1, ResolvedBy = new string('x', 201), Resolution = new string('r', 4097),
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["action_index", "resolved_by", "resolution"], badResolve.Fields());

        var badList = await RefusedAsync(() => Plans.ListRecoveryPlansAsync(new ListRecoveryPlansRequest { PageSize = 5000, PageToken = "zzz" }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["page_size", "page_token"], badList.Fields());

        var unknown = await RefusedAsync(() => Plans.ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = Guid.NewGuid().ToString() }).ResponseAsync,
            StatusCode.NotFound);
        Assert.Equal("RECOVERY_PLAN_NOT_FOUND", unknown.ErrorInfo().Reason);

        // A skip-only plan (validation, low) needs neither task nor workflow.
        Assert.Equal(PlanStatus.Ready, (await Plans.CreatePlanAsync(Error(ErrorCategory.Validation))).Status);
        Assert.Equal(before + 1, await PlanRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_plan_requiring_approval_runs_nothing_until_approved_then_aborts_the_task_and_waits_on_the_escalation()
    {
        var task = await env.EnqueueAsync(NewType("plan.abort"));
        var historyBefore = await env.HistoryCountAsync(task.Id);
        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.Critical, Severity.Critical, code: "DATA_CORRUPTION", taskId: task.Id));
        Assert.Equal(PlanStatus.AwaitingApproval, plan.Status);

        var refused = await RefusedAsync(() => Plans.ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = plan.Id }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("APPROVAL_REQUIRED", refused.ErrorInfo().Reason);
        // Nothing ran: the task is untouched, the plan unchanged.
        var untouched = await env.TaskAsync(task.Id);
        Assert.Equal(TaskStatus.Pending, untouched.Status);
        Assert.Equal(task.UpdatedAt, untouched.UpdatedAt);
        Assert.Equal(historyBefore, await env.HistoryCountAsync(task.Id));
        Assert.Equal(plan, (await Plans.GetRecoveryPlanAsync(new GetRecoveryPlanRequest { PlanId = plan.Id })).Plan);

        var approved = (await Plans.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest { PlanId = plan.Id, ApprovedBy = "ada" })).Plan;
        Assert.Equal(PlanStatus.Ready, approved.Status);
        Assert.Equal("ada", approved.ApprovedBy);
        Assert.NotNull(approved.ApprovedAt);

        var executed = await Plans.ExecuteAsync(plan);
        Assert.Equal(PlanStatus.Waiting, executed.Status);
        Assert.Equal(PlanActionStatus.Succeeded, executed.Actions[0].Status);
        Assert.Contains($"cancelled task {task.Id}", executed.Actions[0].Result);
        Assert.NotNull(executed.Actions[0].Duration);
        Assert.NotNull(executed.Actions[0].FinishedAt);
        Assert.Equal(PlanActionStatus.Waiting, executed.Actions[1].Status);
        Assert.Equal(TaskStatus.Cancelled, (await env.TaskAsync(task.Id)).Status);
        Assert.Contains(executed.NextSteps, s => s.Contains("ResolveManualAction", StringComparison.Ordinal) && s.Contains("\"action_index\":1", StringComparison.Ordinal));
        Assert.Equal((int)PlanStatus.Waiting, await env.ScalarAsync<int>("SELECT status FROM recovery_plans WHERE id = @id", ("id", Guid.Parse(plan.Id))));

        // Executing again while it waits changes nothing.
        Assert.Equal(executed, await Plans.ExecuteAsync(plan));

        var resolved = (await Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = plan.Id, ActionIndex = 1, ResolvedBy = "security-oncall", Resolution = "corrupt rows restored from backup", Succeeded = true,
        })).Plan;
        Assert.Equal(PlanStatus.Recovered, resolved.Status);
        Assert.Equal("security-oncall", resolved.Actions[1].ResolvedBy);
        Assert.Equal(PlanActionStatus.Succeeded, resolved.Actions[1].Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Retry_redrives_a_dead_lettered_task_and_the_unneeded_escalation_is_skipped()
    {
        var task = await env.EnqueueAsync(NewType("plan.dead"), maxRetries: 0);
        var dead = await env.LeaseAndFailAsync(task, retryable: true);
        Assert.Equal(TaskStatus.DeadLettered, dead.Status);

        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.Transient, code: "HTTP_503", taskId: task.Id));
        var executed = await Plans.ExecuteAsync(plan);

        Assert.Equal(PlanStatus.Recovered, executed.Status);
        Assert.Equal(PlanActionStatus.Succeeded, executed.Actions[0].Status);
        Assert.Contains("redrove", executed.Actions[0].Result);
        Assert.Equal(PlanActionStatus.Skipped, executed.Actions[1].Status);
        Assert.Equal(TaskStatus.Pending, (await env.TaskAsync(task.Id)).Status);
        Assert.Empty((await env.QueueClient().ListDeadLettersAsync(new ListDeadLettersRequest { Type = task.Type })).Tasks);
        Assert.Contains(executed.NextSteps, s => s.StartsWith("Retry:", StringComparison.Ordinal));

        // A finished plan executed again does nothing more.
        Assert.Equal(executed, await Plans.ExecuteAsync(plan));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Retry_of_a_failed_task_enqueues_one_copy_with_the_plans_idempotency_key()
    {
        var type = NewType("plan.copy");
        var task = await env.EnqueueAsync(type, payload: "{\"to\":\"ada\"}", priority: 7, workflowId: "wf-copy");
        Assert.Equal(TaskStatus.Failed, (await env.LeaseAndFailAsync(task, retryable: false)).Status);

        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.External, code: "SMTP_421", taskId: task.Id));
        var executed = await Plans.ExecuteAsync(plan);

        Assert.Equal(PlanStatus.Recovered, executed.Status);
        Assert.Equal(PlanActionStatus.Skipped, executed.Actions[1].Status);
        var tasks = (await env.QueueClient().ListTasksAsync(new ListTasksRequest { Type = type })).Tasks;
        Assert.Equal(2, tasks.Count);
        var copy = Assert.Single(tasks, t => t.Id != task.Id);
        Assert.Equal($"retry-of-{task.Id}-{plan.Id}", copy.IdempotencyKey);
        var original = await env.TaskAsync(task.Id);
        Assert.Equal((original.Payload, 7, "wf-copy", TaskStatus.Pending), (copy.Payload, copy.Priority, copy.WorkflowId, copy.Status));
        Assert.Contains(copy.Id, executed.Actions[0].Result);
        Assert.Equal(TaskStatus.Failed, (await env.TaskAsync(task.Id)).Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rollback_moves_the_workflow_head_to_its_latest_valid_checkpoint_then_retry_runs()
    {
        var workflow = $"wf-{Guid.NewGuid():N}";
        var checkpoints = env.CheckpointClient();
        var good = new CheckpointState { Workflow = new WorkflowState { CurrentPhase = 1, Status = "good" }, Context = "{\"step\":1}" };
        var bad = new CheckpointState { Workflow = new WorkflowState { CurrentPhase = 2, Status = "bad" }, Context = "{\"step\":2}" };
        var first = (await checkpoints.CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "good", Type = CheckpointType.Manual, State = good,
        })).Metadata;
        var second = (await checkpoints.CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "bad", Type = CheckpointType.Auto, State = bad,
        })).Metadata;
        await checkpoints.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = second.Id, Reason = "faulty step" });
        var task = await env.EnqueueAsync(NewType("plan.rollback"), workflowId: workflow);

        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.Logic, code: "STATE_MISMATCH", taskId: task.Id, workflowId: workflow));
        Assert.Equal(PlanStatus.AwaitingApproval, plan.Status);
        await Plans.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest { PlanId = plan.Id, ApprovedBy = "ada" });
        var executed = await Plans.ExecuteAsync(plan);

        Assert.Equal(PlanStatus.Recovered, executed.Status);
        Assert.Contains($"back to checkpoint {first.Id}", executed.Actions[0].Result);
        Assert.Contains("nothing to do", executed.Actions[1].Result); // the task is still pending
        var head = (await checkpoints.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflow })).Workflow.HeadCheckpointId;
        Assert.NotEqual(second.Id, head);
        Assert.NotEqual(first.Id, head);
        var headState = (await checkpoints.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = head })).Checkpoint.State;
        var firstState = (await checkpoints.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = first.Id })).Checkpoint.State;
        Assert.Equal(firstState, headState);
        Assert.Equal("good", headState.Workflow.Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_manual_step_waits_for_the_operator_and_its_resolution_completes_the_plan()
    {
        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.Validation, Severity.High, code: "SCHEMA_MISMATCH"));
        Assert.Equal(PlanStatus.Ready, plan.Status);

        var waiting = await Plans.ExecuteAsync(plan);
        Assert.Equal(PlanStatus.Waiting, waiting.Status);
        Assert.Equal(PlanActionStatus.Waiting, Assert.Single(waiting.Actions).Status);
        Assert.NotNull(waiting.Actions[0].StartedAt);

        // Only the waiting action can be resolved.
        var wrongIndex = await RefusedAsync(() => Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = plan.Id, ActionIndex = 3, ResolvedBy = "ada", Succeeded = true,
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["action_index"], wrongIndex.Fields());

        var done = (await Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = plan.Id, ActionIndex = 0, ResolvedBy = "ada", Resolution = "payload fixed and re-submitted", Succeeded = true,
        })).Plan;
        Assert.Equal(PlanStatus.Recovered, done.Status);
        Assert.Equal(("ada", "payload fixed and re-submitted"), (done.Actions[0].ResolvedBy, done.Actions[0].Resolution));
        Assert.NotNull(done.Actions[0].Duration);

        var again = await RefusedAsync(() => Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = plan.Id, ActionIndex = 0, ResolvedBy = "bob", Succeeded = false,
        }).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("INVALID_PLAN_STATE", again.ErrorInfo().Reason);
        Assert.Equal((int)PlanStatus.Recovered, await env.ScalarAsync<int>("SELECT status FROM recovery_plans WHERE id = @id", ("id", Guid.Parse(plan.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_failed_retry_falls_back_to_the_escalation_whose_resolution_decides_the_plan()
    {
        // The task does not exist in the queue: the retry fails, so the escalation runs.
        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.Transient, code: "HTTP_502", taskId: Guid.NewGuid().ToString()));
        var waiting = await Plans.ExecuteAsync(plan);
        Assert.Equal(PlanActionStatus.Failed, waiting.Actions[0].Status);
        Assert.Contains("was not found", waiting.Actions[0].Result);
        Assert.Equal(PlanActionStatus.Waiting, waiting.Actions[1].Status);

        var escalated = (await Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = plan.Id, ActionIndex = 1, ResolvedBy = "oncall", Resolution = "re-submitted by the client", Succeeded = true,
        })).Plan;
        Assert.Equal(PlanStatus.Escalated, escalated.Status);
        Assert.Contains(escalated.NextSteps, s => s.StartsWith("Action 0 (retry) failed", StringComparison.Ordinal));

        // Resolving an escalation as failed ends the plan as failed when nothing succeeded.
        var other = await Plans.CreatePlanAsync(Error(ErrorCategory.Resource, code: "OOM", taskId: Guid.NewGuid().ToString()));
        await Plans.ExecuteAsync(other);
        var failed = (await Plans.ResolveManualActionAsync(new ResolveManualActionRequest
        {
            PlanId = other.Id, ActionIndex = 1, ResolvedBy = "oncall", Resolution = "gave up", Succeeded = false,
        })).Plan;
        Assert.Equal(PlanStatus.Failed, failed.Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_executions_of_one_plan_run_it_once_and_abort_the_other()
    {
        var task = await env.EnqueueAsync(NewType("plan.race"));
        var plan = await Plans.CreatePlanAsync(Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: task.Id));
        await Plans.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest { PlanId = plan.Id, ApprovedBy = "ada" });

        // Hold the plan's row so both calls read it and then queue up on their claim; release once both wait.
        await using var connection = new NpgsqlConnection(env.RecoveryDatabase);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT 1 FROM recovery_plans WHERE id = @id FOR UPDATE", connection, transaction))
        {
            lockRow.Parameters.AddWithValue("id", Guid.Parse(plan.Id));
            await lockRow.ExecuteScalarAsync();
        }
        var calls = Enumerable.Range(0, 2).Select(_ => Plans.ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = plan.Id }).ResponseAsync).ToList();
        await EventuallyAsync(() => env.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%UPDATE recovery_plans%' AND pid <> pg_backend_pid()"), n => n == 2);
        await transaction.CommitAsync();

        var outcomes = await Task.WhenAll(calls.Select(async c =>
        {
            try
            {
                return (Plan: await c, Code: StatusCode.OK);
            }
            catch (RpcException e)
            {
                return (Plan: (ExecuteRecoveryPlanResponse?)null, Code: e.StatusCode);
            }
        }));
        Assert.Single(outcomes, o => o.Code == StatusCode.Aborted);
        var winner = Assert.Single(outcomes, o => o.Code == StatusCode.OK).Plan!.Plan;
        Assert.Equal(PlanStatus.Waiting, winner.Status);
        Assert.Equal(TaskStatus.Cancelled, (await env.TaskAsync(task.Id)).Status);
        // The abort ran once: one cancellation in the task's history.
        var history = (await env.QueueClient().GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id })).Events;
        Assert.Single(history, e => e.EventType == "cancelled");
    }
}

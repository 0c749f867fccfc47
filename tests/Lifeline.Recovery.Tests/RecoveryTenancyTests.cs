using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Security;
using static Lifeline.Recovery.Tests.RecoveryPlanTestSupport;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Issue 13: recovery plans belong to a tenant — every caller, whatever its role, reads and acts on its own tenant's
/// plans only, and another tenant's plan is NOT_FOUND with nothing changed — and a tenant's callers see only their
/// tenant's recovery actions and figures, a platform admin the whole suite's. Called as the gateway forwards
/// callers (a tenant's reader or operator, a platform admin), not as a service.
/// </summary>
public sealed class RecoveryTenancyTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private const string Acme = "acme";
    private const string Default = ServiceHost.DefaultTenant;

    private RecoveryPlanService.RecoveryPlanServiceClient PlansAs(string tenant, Role role = Role.Operator) => new(env.Recovery.As(tenant, role));

    private RecoveryService.RecoveryServiceClient RecoveryAs(string tenant, Role role) => new(env.Recovery.As(tenant, role));

    private Task<long> PlanRowsAsync() => env.ScalarAsync<long>("SELECT count(*) FROM recovery_plans");

    private static async Task<RecoveryPlan> ReadAsync(RecoveryPlanService.RecoveryPlanServiceClient client, RecoveryPlan plan) =>
        (await client.GetRecoveryPlanAsync(new GetRecoveryPlanRequest { PlanId = plan.Id })).Plan;

    private static async Task<List<RecoveryPlan>> ListAllAsync(RecoveryPlanService.RecoveryPlanServiceClient client, PlanStatus status = PlanStatus.Unspecified)
    {
        var plans = new List<RecoveryPlan>();
        var token = "";
        do
        {
            var page = await client.ListRecoveryPlansAsync(new ListRecoveryPlansRequest { Status = status, PageSize = 1000, PageToken = token });
            plans.AddRange(page.Plans);
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        return plans;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_plan_is_not_found_by_any_call_of_its_operator_or_platform_admin_and_stays_as_it_was()
    {
        var owner = PlansAs(Default);
        var task = await env.EnqueueAsync(NewType("tenancy.owned"));
        var historyBefore = await env.HistoryCountAsync(task.Id);
        var awaiting = await owner.CreatePlanAsync(Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: task.Id));
        var ready = await owner.CreatePlanAsync(Error(ErrorCategory.Validation));
        var waiting = await owner.ExecuteAsync(await owner.CreatePlanAsync(Error(ErrorCategory.Validation, Severity.High, code: "SCHEMA_MISMATCH")));
        Assert.Equal((PlanStatus.AwaitingApproval, PlanStatus.Ready, PlanStatus.Waiting), (awaiting.Status, ready.Status, waiting.Status));
        Assert.All(new[] { awaiting, ready, waiting }, p => Assert.Equal(Default, p.Error.TenantId));
        var before = new[] { await ReadAsync(owner, awaiting), await ReadAsync(owner, ready), await ReadAsync(owner, waiting) };

        foreach (var role in new[] { Role.Operator, Role.PlatformAdmin })
        {
            var other = PlansAs(Acme, role);
            // A plan that does not exist: what another tenant's plan must look like.
            var missingId = Guid.NewGuid().ToString();
            var missing = await RefusedAsync(() => other.GetRecoveryPlanAsync(new GetRecoveryPlanRequest { PlanId = missingId }).ResponseAsync,
                StatusCode.NotFound);

            var refusals = new List<(string Id, Google.Rpc.Status Status)>();
            foreach (var plan in before)
            {
                refusals.Add((plan.Id, await RefusedAsync(() => other.GetRecoveryPlanAsync(new GetRecoveryPlanRequest { PlanId = plan.Id }).ResponseAsync,
                    StatusCode.NotFound)));
                refusals.Add((plan.Id, await RefusedAsync(() => other.ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = plan.Id }).ResponseAsync,
                    StatusCode.NotFound)));
            }
            refusals.Add((awaiting.Id, await RefusedAsync(() => other.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest
            {
                PlanId = awaiting.Id, ApprovedBy = "mallory",
            }).ResponseAsync, StatusCode.NotFound)));
            refusals.Add((waiting.Id, await RefusedAsync(() => other.ResolveManualActionAsync(new ResolveManualActionRequest
            {
                PlanId = waiting.Id, ActionIndex = 0, ResolvedBy = "mallory", Resolution = "not mine", Succeeded = true,
            }).ResponseAsync, StatusCode.NotFound)));

            // The same answer as for a plan that does not exist: nothing tells the plan is there.
            Assert.All(refusals, r =>
            {
                Assert.Equal(missing.ErrorInfo().Reason, r.Status.ErrorInfo().Reason);
                Assert.Equal(missing.Message.Replace(missingId, "<id>", StringComparison.Ordinal), r.Status.Message.Replace(r.Id, "<id>", StringComparison.Ordinal));
            });
            Assert.Equal("RECOVERY_PLAN_NOT_FOUND", missing.ErrorInfo().Reason);

            // Listing shows the caller's tenant's plans only, whatever the status asked for.
            foreach (var status in new[] { PlanStatus.Unspecified, PlanStatus.AwaitingApproval, PlanStatus.Ready, PlanStatus.Waiting })
            {
                var listed = await ListAllAsync(other, status);
                Assert.All(listed, p => Assert.Equal(Acme, p.Error.TenantId));
                Assert.DoesNotContain(listed, p => before.Any(b => b.Id == p.Id));
            }
        }

        // Re-read as their tenant: every plan as it was, the task untouched.
        Assert.Equal(before, new[] { await ReadAsync(owner, awaiting), await ReadAsync(owner, ready), await ReadAsync(owner, waiting) });
        var listedByOwner = await ListAllAsync(owner);
        Assert.All(before, b => Assert.Contains(b, listedByOwner));
        Assert.All(listedByOwner, p => Assert.Equal(Default, p.Error.TenantId));
        var untouched = await env.TaskAsync(task.Id);
        Assert.Equal((TaskStatus.Pending, task.UpdatedAt), (untouched.Status, untouched.UpdatedAt));
        Assert.Equal(historyBefore, await env.HistoryCountAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_body_naming_another_tenant_creates_nothing_and_a_plan_without_one_acts_on_the_callers_tasks_only()
    {
        var acme = PlansAs(Acme);
        var acmeQueue = env.QueueClient(Acme);
        var defaultTask = await env.EnqueueAsync(NewType("tenancy.default"));
        var defaultHistory = await env.HistoryCountAsync(defaultTask.Id);
        var before = await PlanRowsAsync();

        foreach (var error in new[]
        {
            Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: defaultTask.Id),
            Error(ErrorCategory.Validation, code: "SCHEMA_MISMATCH"),
        })
        {
            error.TenantId = Default;
            await RefusedAsync(() => acme.CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest { Error = error }).ResponseAsync, StatusCode.NotFound);
        }
        Assert.Equal(before, await PlanRowsAsync());

        // Without a tenant in the body the plan is the caller's, and so are the tasks it acts on.
        var acmeTask = await acmeQueue.EnqueueAsync(NewType("tenancy.acme"));
        var own = await acme.CreatePlanAsync(Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: acmeTask.Id));
        var foreign = await acme.CreatePlanAsync(Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: defaultTask.Id));
        Assert.Equal(before + 2, await PlanRowsAsync());
        foreach (var plan in new[] { own, foreign })
        {
            Assert.Equal(Acme, plan.Error.TenantId);
            Assert.Equal(Acme, await env.ScalarAsync<string>("SELECT tenant_id FROM recovery_plans WHERE id = @id", ("id", Guid.Parse(plan.Id))));
            await acme.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest { PlanId = plan.Id, ApprovedBy = "acme-oncall" });
        }

        var aborted = await acme.ExecuteAsync(own);
        Assert.Equal(PlanActionStatus.Succeeded, aborted.Actions[0].Status);
        Assert.Contains($"cancelled task {acmeTask.Id}", aborted.Actions[0].Result);
        Assert.Equal(TaskStatus.Cancelled, (await acmeQueue.GetTaskAsync(new GetTaskRequest { TaskId = acmeTask.Id })).Task.Status);

        // The default tenant's task id means nothing in acme: the abort finds no task and the task is untouched.
        var missed = await acme.ExecuteAsync(foreign);
        Assert.Equal(PlanActionStatus.Failed, missed.Actions[0].Status);
        Assert.Contains($"task {defaultTask.Id} was not found in tenant '{Acme}'", missed.Actions[0].Result);
        var untouched = await env.TaskAsync(defaultTask.Id);
        Assert.Equal((TaskStatus.Pending, defaultTask.UpdatedAt), (untouched.Status, untouched.UpdatedAt));
        Assert.Equal(defaultHistory, await env.HistoryCountAsync(defaultTask.Id));

        // Acme lists both; the default tenant neither.
        var acmePlans = (await ListAllAsync(acme)).Select(p => p.Id).ToList();
        Assert.Contains(own.Id, acmePlans);
        Assert.Contains(foreign.Id, acmePlans);
        var defaultPlans = (await ListAllAsync(PlansAs(Default, Role.Reader))).Select(p => p.Id).ToList();
        Assert.DoesNotContain(own.Id, defaultPlans);
        Assert.DoesNotContain(foreign.Id, defaultPlans);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Operators_racing_on_their_own_and_each_others_plans_execute_each_plan_once_and_only_as_its_tenant()
    {
        var defaultTask = await env.EnqueueAsync(NewType("tenancy.race"));
        var acmeTask = await env.QueueClient(Acme).EnqueueAsync(NewType("tenancy.race"));
        var plans = new Dictionary<string, RecoveryPlan>
        {
            [Default] = await PlansAs(Default).CreatePlanAsync(Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: defaultTask.Id)),
            [Acme] = await PlansAs(Acme).CreatePlanAsync(Error(ErrorCategory.Security, code: "TOKEN_LEAK", taskId: acmeTask.Id)),
        };
        Assert.All(plans.Values, p => Assert.Equal(PlanStatus.AwaitingApproval, p.Status));

        // Two operators of each tenant, each approving and executing both plans, three rounds, all at once.
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var actors = new List<Task<List<(string Caller, string Owner, string Rpc, StatusCode Code, string? Reason)>>>();
        foreach (var caller in new[] { Default, Acme, Default, Acme })
        {
            foreach (var owner in plans.Keys)
            {
                actors.Add(RaceAsync(PlansAs(caller), caller, owner, plans[owner].Id, start.Task));
            }
        }
        start.SetResult();
        var calls = (await Task.WhenAll(actors)).SelectMany(c => c).ToList();

        // Another tenant's plan: NOT_FOUND, every time.
        Assert.All(calls.Where(c => c.Caller != c.Owner), c => Assert.Equal(StatusCode.NotFound, c.Code));
        // Its own: done, lost a race (ABORTED), or not approved yet.
        Assert.All(calls.Where(c => c.Caller == c.Owner), c => Assert.True(
            c.Code is StatusCode.OK or StatusCode.Aborted || (c.Code, c.Reason) == (StatusCode.FailedPrecondition, "APPROVAL_REQUIRED"),
            $"{c.Caller} {c.Rpc} on {c.Owner}'s plan: {c.Code} {c.Reason}"));

        foreach (var (tenant, queue, task) in new[] { (Default, env.QueueClient(Default), defaultTask), (Acme, env.QueueClient(Acme), acmeTask) })
        {
            Assert.Contains(calls, c => (c.Caller, c.Owner, c.Rpc, c.Code) == (tenant, tenant, "execute", StatusCode.OK));
            var plan = await ReadAsync(PlansAs(tenant), plans[tenant]);
            // Approved by its own tenant's operators only, executed once: one abort, now waiting on the escalation.
            Assert.Equal($"{tenant}-oncall", plan.ApprovedBy);
            Assert.Equal(PlanStatus.Waiting, plan.Status);
            Assert.Equal(PlanActionStatus.Succeeded, plan.Actions[0].Status);
            Assert.Contains($"cancelled task {task.Id}", plan.Actions[0].Result);
            Assert.Equal(PlanActionStatus.Waiting, plan.Actions[1].Status);
            Assert.Equal(TaskStatus.Cancelled, (await queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Status);
            var history = (await queue.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = task.Id, PageSize = 1000 })).Events;
            Assert.Single(history, e => e.EventType == "cancelled");
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_tenant_reader_sees_its_tenants_actions_and_figures_only_and_a_platform_admin_the_whole_suite()
    {
        var recovered = new Dictionary<string, Recovery.V1.RecoveryAction>();
        var running = new List<(QueueService.QueueServiceClient Queue, Queue.V1.Task Task)>();
        var workers = new List<LiveWorker>();
        try
        {
            foreach (var tenant in new[] { Default, Acme })
            {
                // A task that times out under its (live) worker: recovery retries it and records the action in the task's tenant.
                var queue = env.QueueClient(tenant);
                var type = InFlightTestSupport.NewType();
                var task = await queue.EnqueueAsync(type, maxRetries: 3, timeoutSeconds: 1);
                workers.Add(await LiveWorker.StartAsync(env, type, tenant));
                await queue.LeaseOneAsync(workers[^1].Id, type);
                recovered[tenant] = (await InFlightTestSupport.EventuallyAsync(async () =>
                {
                    var listed = (await env.RecoveryClient().ListRecoveryActionsAsync(new ListRecoveryActionsRequest { TaskId = task.Id })).Actions;
                    return listed.Count > 0 ? listed[0] : null;
                }, TimeSpan.FromSeconds(30), $"recovery of {tenant}'s timed-out task {task.Id}"));
                Assert.Equal(tenant, recovered[tenant].TenantId);

                // And one running under a live worker: in flight.
                var busyType = InFlightTestSupport.NewType();
                await queue.EnqueueAsync(busyType);
                workers.Add(await LiveWorker.StartAsync(env, busyType, tenant));
                running.Add((queue, await queue.LeaseOneAsync(workers[^1].Id, busyType, leaseSeconds: 300)));
            }

            foreach (var (tenant, other) in new[] { (Acme, Default), (Default, Acme) })
            {
                var reader = RecoveryAs(tenant, Role.Reader);
                var listed = (await reader.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { PageSize = 1000 })).Actions;
                Assert.Contains(listed, a => a.Id == recovered[tenant].Id);
                Assert.All(listed, a => Assert.Equal(tenant, a.TenantId));
                // Filters naming the other tenant's task or worker find nothing.
                Assert.Empty((await reader.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { TaskId = recovered[other].TaskId })).Actions);
                Assert.Empty((await reader.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { WorkerId = recovered[other].WorkerId })).Actions);
                Assert.Equal(recovered[tenant], Assert.Single(
                    (await reader.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { TaskId = recovered[tenant].TaskId })).Actions));
            }

            // A platform admin (of acme) sees both tenants' actions.
            var admin = RecoveryAs(Acme, Role.PlatformAdmin);
            var all = (await admin.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { PageSize = 1000 })).Actions;
            Assert.Contains(all, a => a.Id == recovered[Acme].Id);
            Assert.Contains(all, a => a.Id == recovered[Default].Id);
            Assert.Equal(recovered[Default], Assert.Single(
                (await admin.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { TaskId = recovered[Default].TaskId })).Actions));

            // Figures: the reader's tenant's, the admin's over the suite (nothing else acts in this class meanwhile).
            var acmeStats = await RecoveryAs(Acme, Role.Reader).GetRecoveryStatsAsync(new GetRecoveryStatsRequest());
            var adminStats = await admin.GetRecoveryStatsAsync(new GetRecoveryStatsRequest());
            Assert.Equal(await TodayAsync(Acme, succeeded: true), acmeStats.RecoveredToday);
            Assert.Equal(await TodayAsync(Acme, succeeded: false), acmeStats.FailedToday);
            Assert.Equal(await TodayAsync(null, succeeded: true), adminStats.RecoveredToday);
            Assert.Equal(await TodayAsync(null, succeeded: false), adminStats.FailedToday);
            Assert.True(adminStats.RecoveredToday > acmeStats.RecoveredToday, $"suite {adminStats.RecoveredToday}, acme {acmeStats.RecoveredToday}");
            var acmeInFlight = await InFlightAsync(Acme);
            Assert.True(acmeInFlight >= 1);
            Assert.Equal(acmeInFlight, acmeStats.InFlight);
            Assert.Equal(acmeInFlight + await InFlightAsync(Default), adminStats.InFlight);
        }
        finally
        {
            foreach (var (queue, task) in running)
            {
                await queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken });
            }
            foreach (var worker in workers)
            {
                await worker.DisposeAsync();
            }
        }
    }

    /// <summary>Today's successful (not dead-lettered) or failed actions in the store: one tenant's, or all.</summary>
    private Task<long> TodayAsync(string? tenant, bool succeeded) => env.ScalarAsync<long>(
        $"""
        SELECT count(*) FROM recovery_actions
        WHERE recovered_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          AND (@tenant = '' OR tenant_id = @tenant)
          AND {(succeeded ? "succeeded AND action <> 4" : "(NOT succeeded OR action = 4)")}
        """, ("tenant", tenant ?? ""));

    private async Task<long> InFlightAsync(string tenant)
    {
        var totals = (await env.QueueClient(tenant).GetQueueStatsAsync(new GetQueueStatsRequest())).Totals;
        return totals.GetValueOrDefault("TASK_STATUS_ASSIGNED") + totals.GetValueOrDefault("TASK_STATUS_RUNNING");
    }

    private static async Task<List<(string Caller, string Owner, string Rpc, StatusCode Code, string? Reason)>> RaceAsync(
        RecoveryPlanService.RecoveryPlanServiceClient client, string caller, string owner, string planId, Task start)
    {
        await start;
        var calls = new List<(string, string, string, StatusCode, string?)>();
        for (var round = 0; round < 3; round++)
        {
            var (approved, approveReason) = await CodeOfAsync(() =>
                client.ApproveRecoveryPlanAsync(new ApproveRecoveryPlanRequest { PlanId = planId, ApprovedBy = $"{caller}-oncall" }).ResponseAsync);
            calls.Add((caller, owner, "approve", approved, approveReason));
            var (executed, executeReason) = await CodeOfAsync(() =>
                client.ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = planId }).ResponseAsync);
            calls.Add((caller, owner, "execute", executed, executeReason));
        }
        return calls;
    }

    private static async Task<(StatusCode, string?)> CodeOfAsync<T>(Func<Task<T>> call)
    {
        try
        {
            await call();
            return (StatusCode.OK, null);
        }
        catch (RpcException e)
        {
            return (e.StatusCode, e.Reason());
        }
    }
}

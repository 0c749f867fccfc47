using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Recovery.Leadership;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Leadership;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using static Lifeline.Recovery.Tests.RecoveryPlanTestSupport;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Disaster-recovery plans and runs: real step executors, critical and non-critical failures, one run at a
/// time across instances, cancellation, progress streamed in order, orphaned runs failed at startup.
/// </summary>
public sealed class DisasterRecoveryTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private DisasterRecoveryService.DisasterRecoveryServiceClient Dr => env.DisasterRecoveryClient();

    private static DrStep Step(string name, DrStepType type, bool critical, params string[] targets) =>
        new() { Name = name, Type = type, Critical = critical, Targets = { targets } };

    private async Task<DisasterRecoveryPlan> CreateAsync(string prefix, params DrStep[] steps) =>
        (await Dr.CreateDisasterRecoveryPlanAsync(new CreateDisasterRecoveryPlanRequest
        {
            Name = $"{prefix}-{Guid.NewGuid():N}", Description = "test plan", Steps = { steps },
        })).Plan;

    /// <summary>Runs a plan and reads its whole stream.</summary>
    private static async Task<List<RunDisasterRecoveryPlanResponse>> RunAsync(DisasterRecoveryService.DisasterRecoveryServiceClient client, string planId)
    {
        using var call = client.RunDisasterRecoveryPlan(new RunDisasterRecoveryPlanRequest { PlanId = planId, StartedBy = "tests" });
        var events = new List<RunDisasterRecoveryPlanResponse>();
        await foreach (var e in call.ResponseStream.ReadAllAsync())
        {
            events.Add(e);
        }
        return events;
    }

    /// <summary>Holds an exclusive lock on the outbox so a notification step blocks until released.</summary>
    private async Task<(NpgsqlConnection Connection, NpgsqlTransaction Transaction)> HoldOutboxAsync()
    {
        var connection = new NpgsqlConnection(env.RecoveryDatabase);
        await connection.OpenAsync();
        var transaction = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE", connection, transaction);
        await command.ExecuteNonQueryAsync();
        return (connection, transaction);
    }

    private Task<ServiceHost> StartWithWebhookAsync(string hook) => env.StartRecoveryAsync(new Dictionary<string, string?>
    {
        ["Recovery:Webhooks:0:Name"] = hook,
        ["Recovery:Webhooks:0:Url"] = "http://127.0.0.1:9/dr",
        ["Recovery:Webhooks:0:Secret"] = "dr-secret",
    });

    private async Task WaitForSystemStateAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                await env.SystemStateClient().GetSystemStateAsync(new GetSystemStateRequest());
                return;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_failing_non_critical_step_is_recorded_and_the_run_completes_with_failures()
    {
        var plan = await CreateAsync("done-when",
            Step("validate", DrStepType.Validation, critical: true),
            Step("tell-nobody", DrStepType.Notification, critical: false, "nobody"),
            Step("recover-tasks", DrStepType.TaskRecovery, critical: true));
        // Validation requires a system-state snapshot: the leader writes its first one once it leads.
        await WaitForSystemStateAsync();

        var events = await RunAsync(Dr, plan.Id);

        // Progress in order: each step running, then its end; the run last.
        var progress = events.Where(e => e.EventCase == RunDisasterRecoveryPlanResponse.EventOneofCase.Progress).Select(e => e.Progress).ToList();
        Assert.Equal([(0, DrStepStatus.Running), (0, DrStepStatus.Succeeded), (1, DrStepStatus.Running), (1, DrStepStatus.Failed),
            (2, DrStepStatus.Running), (2, DrStepStatus.Succeeded)], progress.Select(p => (p.StepIndex, p.Step.Status)));
        var run = events[^1].Run;
        Assert.NotNull(run);
        Assert.Equal(DrRunStatus.CompletedWithFailures, run.Status);
        Assert.Equal([DrStepStatus.Succeeded, DrStepStatus.Failed, DrStepStatus.Succeeded], run.Steps.Select(s => s.Status));
        Assert.Contains("unknown webhook 'nobody'", run.Steps[1].Message);
        Assert.Contains("system state present", run.Steps[0].Message);
        Assert.Contains("queue serving", run.Steps[0].Message);
        Assert.Contains("recovery scan", run.Steps[2].Message);
        Assert.All(run.Steps, s => Assert.NotNull(s.FinishedAt));
        Assert.NotNull(run.FinishedAt);
        Assert.Equal("tests", run.StartedBy);

        Assert.Equal(run, (await Dr.GetDisasterRecoveryRunAsync(new GetDisasterRecoveryRunRequest { RunId = run.Id })).Run);
        var withRuns = await Dr.GetDisasterRecoveryPlanAsync(new GetDisasterRecoveryPlanRequest { PlanId = plan.Id });
        Assert.Equal(run.Id, Assert.Single(withRuns.RecentRuns).Id);
        Assert.Equal(3, await env.ScalarAsync<int>("SELECT status FROM dr_runs WHERE id = @id", ("id", Guid.Parse(run.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_failing_critical_step_fails_the_run_and_skips_the_rest()
    {
        var plan = await CreateAsync("critical",
            Step("backup-first", DrStepType.Backup, critical: true, "queuedb"),
            Step("then-validate", DrStepType.Validation, critical: true),
            Step("then-notify", DrStepType.Notification, critical: false));

        var run = (await RunAsync(Dr, plan.Id))[^1].Run;

        Assert.Equal(DrRunStatus.Failed, run.Status);
        Assert.Equal(DrStepStatus.Failed, run.Steps[0].Status);
        Assert.Contains("backup service not configured", run.Steps[0].Message);
        Assert.All(run.Steps.Skip(1), s =>
        {
            Assert.Equal(DrStepStatus.Skipped, s.Status);
            Assert.Contains("critical step 'backup-first' failed", s.Message);
            Assert.Null(s.StartedAt);
        });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_second_run_while_one_is_in_progress_is_aborted_on_any_instance()
    {
        var hook = $"dr-{Guid.NewGuid():N}"[..12];
        var host = await StartWithWebhookAsync(hook);
        try
        {
            var plan = await CreateAsync("one-at-a-time", Step("notify", DrStepType.Notification, critical: true, hook));
            var (connection, transaction) = await HoldOutboxAsync();
            await using (connection)
            {
                using var first = env.DisasterRecoveryClient(host).RunDisasterRecoveryPlan(new RunDisasterRecoveryPlanRequest { PlanId = plan.Id });
                Assert.True(await first.ResponseStream.MoveNext());
                Assert.Equal(DrStepStatus.Running, first.ResponseStream.Current.Progress.Step.Status);

                foreach (var client in new[] { Dr, env.DisasterRecoveryClient(host) })
                {
                    var ex = await Assert.ThrowsAsync<RpcException>(() => RunAsync(client, plan.Id));
                    Assert.Equal(StatusCode.Aborted, ex.StatusCode);
                    Assert.StartsWith("recovery already in progress", ex.Status.Detail, StringComparison.Ordinal);
                    Assert.Equal("RECOVERY_IN_PROGRESS", ex.GetRpcStatus()!.ErrorInfo().Reason);
                }
                Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM dr_runs WHERE plan_id = @p", ("p", Guid.Parse(plan.Id))));

                await transaction.CommitAsync();
                var rest = new List<RunDisasterRecoveryPlanResponse>();
                while (await first.ResponseStream.MoveNext())
                {
                    rest.Add(first.ResponseStream.Current);
                }
                Assert.Equal(DrRunStatus.Completed, rest[^1].Run.Status);
            }
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cancelling_a_run_interrupts_its_step_and_skips_the_rest_even_from_another_instance()
    {
        var hook = $"dr-{Guid.NewGuid():N}"[..12];
        var host = await StartWithWebhookAsync(hook);
        try
        {
            var plan = await CreateAsync("cancel",
                Step("notify", DrStepType.Notification, critical: false, hook),
                Step("validate", DrStepType.Validation, critical: true));
            var (connection, transaction) = await HoldOutboxAsync();
            await using (connection)
            {
                using var call = env.DisasterRecoveryClient(host).RunDisasterRecoveryPlan(new RunDisasterRecoveryPlanRequest { PlanId = plan.Id });
                Assert.True(await call.ResponseStream.MoveNext());
                var runId = call.ResponseStream.Current.Progress.RunId;
                // While it executes, its instance holds the run's liveness role.
                var holder = host.App.Services.GetRequiredKeyedService<LeaderElection>(RecoveryLeadership.Role).Holder;
                Assert.Equal(holder, await env.ScalarAsync<string>(
                    "SELECT holder FROM lifeline_leaders WHERE name = @name AND expires_at > now()", ("name", $"dr-run:{runId}")));

                // Cancelled through the other instance: the executing one sees the request and interrupts the step.
                var cancelled = (await Dr.CancelDisasterRecoveryRunAsync(new CancelDisasterRecoveryRunRequest { RunId = runId })).Run;
                Assert.Equal(DrRunStatus.Cancelled, cancelled.Status);
                Assert.Equal(DrStepStatus.Failed, cancelled.Steps[0].Status);
                Assert.Contains("interrupted: the run was cancelled", cancelled.Steps[0].Message);
                Assert.Equal(DrStepStatus.Skipped, cancelled.Steps[1].Status);
                Assert.Contains("the run was cancelled", cancelled.Steps[1].Message);
                await transaction.RollbackAsync();

                var rest = new List<RunDisasterRecoveryPlanResponse>();
                while (await call.ResponseStream.MoveNext())
                {
                    rest.Add(call.ResponseStream.Current);
                }
                Assert.Equal(DrRunStatus.Cancelled, rest[^1].Run.Status);
                Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM lifeline_leaders WHERE name = @name", ("name", $"dr-run:{runId}")));
                Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM notifications WHERE webhook = @w", ("w", hook)));

                var again = await RefusedAsync(() => Dr.CancelDisasterRecoveryRunAsync(new CancelDisasterRecoveryRunRequest { RunId = runId }).ResponseAsync,
                    StatusCode.FailedPrecondition);
                Assert.Equal("RUN_NOT_RUNNING", again.ErrorInfo().Reason);
            }
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_run_whose_instance_still_holds_its_liveness_role_is_left_alone_until_the_role_expires()
    {
        var plan = await CreateAsync("paused", Step("validate", DrStepType.Validation, critical: true));
        var runId = Guid.NewGuid();
        var steps = "[{\"name\":\"validate\",\"type\":\"DR_STEP_TYPE_VALIDATION\",\"critical\":true,\"status\":\"DR_STEP_STATUS_RUNNING\"}]";
        await env.ScalarOnAsync<object?>(env.RecoveryDatabase,
            "INSERT INTO dr_runs (id, plan_id, status, steps, started_by, started_at, cancel_requested, instance) " +
            "VALUES (@id, @plan, 1, @steps::jsonb, 'paused', now(), false, 'paused-instance') RETURNING NULL",
            ("id", runId), ("plan", Guid.Parse(plan.Id)), ("steps", steps));
        // The executing instance is paused, not dead: its role runs for 8 s more.
        var expiry = TimeSpan.FromSeconds(8);
        var claimed = System.Diagnostics.Stopwatch.StartNew();
        await using (var dataSource = Npgsql.NpgsqlDataSource.Create(env.RecoveryDatabase))
        {
            Assert.NotNull(await LeadershipTable.ClaimAsync(dataSource, $"dr-run:{runId}", "paused-instance", 0, expiry, CancellationToken.None));
        }

        var restarted = await env.StartRecoveryAsync();
        try
        {
            var client = env.DisasterRecoveryClient(restarted);
            var other = await CreateAsync("blocked", Step("validate", DrStepType.Validation, critical: false));
            Assert.Equal(DrRunStatus.Running, (await client.GetDisasterRecoveryRunAsync(new GetDisasterRecoveryRunRequest { RunId = runId.ToString() })).Run.Status);
            var blocked = await Assert.ThrowsAsync<RpcException>(() => RunAsync(client, other.Id));
            Assert.Equal("RECOVERY_IN_PROGRESS", blocked.GetRpcStatus()!.ErrorInfo().Reason);
            Assert.True(claimed.Elapsed < expiry, $"the checks above ran after the role expired ({claimed.Elapsed.TotalSeconds:0.0} s)");

            await Task.Delay(expiry - claimed.Elapsed + TimeSpan.FromMilliseconds(200) is { Ticks: > 0 } wait ? wait : TimeSpan.Zero);
            // Expired: the run blocking a new one is failed as orphaned, its role forgotten, and the new run goes ahead.
            var events = await RunAsync(client, other.Id);
            Assert.NotEqual(DrRunStatus.Running, events[^1].Run.Status);
            var orphan = (await client.GetDisasterRecoveryRunAsync(new GetDisasterRecoveryRunRequest { RunId = runId.ToString() })).Run;
            Assert.Equal(DrRunStatus.Failed, orphan.Status);
            Assert.Contains("the recovery instance paused-instance executing the run stopped", orphan.Steps[0].Message);
            Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM lifeline_leaders WHERE name LIKE 'dr-run:%'"));
        }
        finally
        {
            await restarted.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_run_left_running_by_a_dead_instance_is_failed_at_startup()
    {
        var plan = await CreateAsync("orphan", Step("validate", DrStepType.Validation, critical: true), Step("notify", DrStepType.Notification, critical: false));
        var runId = Guid.NewGuid();
        var steps = "[{\"name\":\"validate\",\"type\":\"DR_STEP_TYPE_VALIDATION\",\"critical\":true,\"status\":\"DR_STEP_STATUS_RUNNING\"}," +
                    "{\"name\":\"notify\",\"type\":\"DR_STEP_TYPE_NOTIFICATION\",\"status\":\"DR_STEP_STATUS_PENDING\"}]";
        await env.ScalarOnAsync<object?>(env.RecoveryDatabase,
            "INSERT INTO dr_runs (id, plan_id, status, steps, started_by, started_at, cancel_requested, instance) " +
            "VALUES (@id, @plan, 1, @steps::jsonb, 'crashed', now(), false, 'dead-instance') RETURNING NULL",
            ("id", runId), ("plan", Guid.Parse(plan.Id)), ("steps", steps));

        var restarted = await env.StartRecoveryAsync();
        try
        {
            var run = (await Dr.GetDisasterRecoveryRunAsync(new GetDisasterRecoveryRunRequest { RunId = runId.ToString() })).Run;
            Assert.Equal(DrRunStatus.Failed, run.Status);
            Assert.NotNull(run.FinishedAt);
            Assert.Equal(DrStepStatus.Failed, run.Steps[0].Status);
            Assert.Contains("the recovery instance dead-instance executing the run stopped", run.Steps[0].Message);
            Assert.Equal(DrStepStatus.Skipped, run.Steps[1].Status);
        }
        finally
        {
            await restarted.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Invalid_plans_name_every_bad_field_and_write_nothing()
    {
        var before = await env.ScalarAsync<long>("SELECT count(*) FROM dr_plans");
        var bad = await RefusedAsync(() => Dr.CreateDisasterRecoveryPlanAsync(new CreateDisasterRecoveryPlanRequest
        {
            Name = " ",
            Steps =
            {
                new DrStep { Name = "a", Type = DrStepType.Unspecified },
                new DrStep { Name = "a", Type = DrStepType.Backup, Targets = { "nosuchdb" } },
                new DrStep { Name = "", Type = DrStepType.Validation, Targets = { "queue", "mainframe" }, Timeout = Duration.FromTimeSpan(TimeSpan.FromDays(2)) },
                new DrStep { Name = "scan", Type = DrStepType.TaskRecovery, Targets = { "x" } },
            },
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["name", "steps[0].type", "steps[1].name", "steps[1].targets[0]", "steps[2].name", "steps[2].targets[1]", "steps[2].timeout",
            "steps[3].targets[0]"], bad.Fields());

        var none = await RefusedAsync(() => Dr.CreateDisasterRecoveryPlanAsync(new CreateDisasterRecoveryPlanRequest { Name = "empty" }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["steps"], none.Fields());
        var tooMany = new CreateDisasterRecoveryPlanRequest { Name = "too-many" };
        tooMany.Steps.AddRange(Enumerable.Range(0, 51).Select(i => Step($"s{i}", DrStepType.Validation, false)));
        Assert.Equal(["steps"], (await RefusedAsync(() => Dr.CreateDisasterRecoveryPlanAsync(tooMany).ResponseAsync, StatusCode.InvalidArgument)).Fields());
        Assert.Equal(before, await env.ScalarAsync<long>("SELECT count(*) FROM dr_plans"));

        var plan = await CreateAsync("unique", Step("v", DrStepType.Validation, true));
        var duplicate = await RefusedAsync(() => Dr.CreateDisasterRecoveryPlanAsync(new CreateDisasterRecoveryPlanRequest
        {
            Name = plan.Name, Steps = { Step("v", DrStepType.Validation, true) },
        }).ResponseAsync, StatusCode.AlreadyExists);
        Assert.Equal(plan.Id, duplicate.ErrorInfo().Metadata["plan_id"]);
        Assert.Equal(before + 1, await env.ScalarAsync<long>("SELECT count(*) FROM dr_plans"));

        var badRun = await Assert.ThrowsAsync<RpcException>(() => RunAsync(Dr, "not-a-uuid"));
        Assert.Equal(StatusCode.InvalidArgument, badRun.StatusCode);
        var unknownRun = await Assert.ThrowsAsync<RpcException>(() => RunAsync(Dr, Guid.NewGuid().ToString()));
        Assert.Equal(StatusCode.NotFound, unknownRun.StatusCode);
        var unknownGet = await RefusedAsync(() => Dr.GetDisasterRecoveryRunAsync(new GetDisasterRecoveryRunRequest { RunId = Guid.NewGuid().ToString() }).ResponseAsync,
            StatusCode.NotFound);
        Assert.Equal("DR_RUN_NOT_FOUND", unknownGet.ErrorInfo().Reason);

        var listed = await Dr.ListDisasterRecoveryPlansAsync(new ListDisasterRecoveryPlansRequest { PageSize = 1000 });
        Assert.Contains(listed.Plans, p => p.Id == plan.Id && p.Steps.Count == 1);
    }
}

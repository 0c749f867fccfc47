using Google.Rpc;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Recovery.Tests;

/// <summary>Each consistency check finds a planted problem and its fix repairs it, checked in the live services.</summary>
public sealed class ConsistencyTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private static readonly string[] CheckNames =
        ["orphaned_assignments", "worker_task_mismatch", "circular_dependencies", "timeout_violations", "redis_postgres_disagreement"];

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_healthy_system_has_no_issues_and_every_check_is_listed()
    {
        var scene = await ConsistencyScene.StartAsync(env, "healthy");
        var worker = await scene.RegisterAsync("healthy.work");
        var task = await scene.RunningTaskAsync(worker, "healthy.work");
        await scene.Registry.HeartbeatAsync(new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, RunningTaskIds = { task.Id } });
        await scene.Queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = "healthy.later", Payload = "{}" } });

        var checks = await scene.Consistency.ListChecksAsync(new ListChecksRequest());
        Assert.Equal(CheckNames, checks.Checks.Select(c => c.Name));
        Assert.All(checks.Checks, c => Assert.False(string.IsNullOrEmpty(c.Description) || string.IsNullOrEmpty(c.FixDescription)));

        var run = await scene.Consistency.RunAllChecksAsync(new RunAllChecksRequest());

        Assert.Equal(CheckNames, run.Results.Select(r => r.Check.Name));
        Assert.All(run.Results, r => Assert.Equal("", r.Error));
        Assert.Equal(0, run.TotalIssues);
        Assert.Empty(run.IssuesBySeverity);
        Assert.Equal("*", await env.ScalarAsync<string>("SELECT scope FROM check_runs WHERE id = @id AND finished_at IS NOT NULL", ("id", Guid.Parse(run.RunId))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Orphaned_assignment_of_a_deregistered_worker_is_found_and_requeued_but_not_on_a_dry_run()
    {
        var scene = await ConsistencyScene.StartAsync(env, "orphan");
        var worker = await scene.RegisterAsync("orphan.work");
        var task = await scene.RunningTaskAsync(worker, "orphan.work");
        await scene.Registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });

        var all = await scene.Consistency.RunAllChecksAsync(new RunAllChecksRequest());
        Assert.Equal(1, all.TotalIssues);
        Assert.Equal(1, all.IssuesBySeverity["SEVERITY_HIGH"]);
        var result = await scene.RunAsync("orphaned_assignments");
        var issue = Assert.Single(result.Issues);
        Assert.Equal($"task:{task.Id}", issue.Subject);
        Assert.Equal(Severity.High, issue.Severity);
        Assert.Equal(scene.Tenant, issue.TenantId);
        Assert.Equal(task.FencingToken.ToString(System.Globalization.CultureInfo.InvariantCulture), issue.Details["fencing_token"]);
        Assert.Equal("deregistered", issue.Details["worker_state"]);

        var dry = await scene.FixAsync(result, dryRun: true);
        Assert.Equal(0, dry.Fixed);
        Assert.StartsWith("dry run: would requeue", Assert.Single(dry.Issues).FixResult, StringComparison.Ordinal);
        Assert.Equal(TaskStatus.Running, (await scene.Queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Status);
        Assert.False(await env.ScalarAsync<bool>("SELECT fixed FROM consistency_issues WHERE id = @id", ("id", Guid.Parse(issue.Id))));

        var fixedIt = await scene.FixAsync(result);

        Assert.Equal(1, fixedIt.Fixed);
        Assert.True(Assert.Single(fixedIt.Issues).Fixed);
        Assert.Equal(TaskStatus.Pending, (await scene.Queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Status);
        Assert.True(await env.ScalarAsync<bool>("SELECT fixed FROM consistency_issues WHERE id = @id", ("id", Guid.Parse(issue.Id))));
        Assert.Empty((await scene.RunAsync("orphaned_assignments")).Issues);

        // Fixing the same run again re-validates nothing left to do.
        Assert.Empty((await scene.FixAsync(result)).Issues);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_reporting_a_task_the_queue_has_completed_is_told_to_drop_it()
    {
        var scene = await ConsistencyScene.StartAsync(env, "mismatch");
        var worker = await scene.RegisterAsync("mismatch.work");
        var task = await scene.RunningTaskAsync(worker, "mismatch.work");
        await scene.Queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken });
        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, RunningTaskIds = { task.Id } };
        await scene.Registry.HeartbeatAsync(beat);

        var result = await scene.RunUntilFoundAsync("worker_task_mismatch");

        var issue = Assert.Single(result.Issues);
        Assert.Equal($"worker:{worker.Id}", issue.Subject);
        Assert.Equal(task.Id, issue.Details["task_id"]);
        Assert.Equal("TASK_STATUS_COMPLETED", issue.Details["task_status"]);
        Assert.Equal(Severity.Medium, issue.Severity);

        await scene.Registry.HeartbeatAsync(beat); // still alive and still reporting it
        var fixedIt = await scene.FixAsync(result);

        Assert.Equal(1, fixedIt.Fixed);
        var commands = (await scene.Registry.HeartbeatAsync(new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch })).Commands;
        Assert.Equal(task.Id, Assert.Single(commands).CancelTask.TaskId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_planted_dependency_cycle_is_found_and_its_newest_edge_removed()
    {
        var scene = await ConsistencyScene.StartAsync(env, "cycle");
        var a = (await scene.Queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = "cycle.work", Payload = "{}" } })).Task;
        var b = (await scene.Queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = "cycle.work", Payload = "{}" } })).Task;
        await scene.Queue.AddDependencyAsync(new AddDependencyRequest { TaskId = a.Id, DependsOnTaskId = b.Id });
        await env.ScalarOnAsync<int>(env.QueueDatabase, """
            WITH edge AS (
                INSERT INTO task_dependencies (task_id, depends_on_id, tenant_id, type, state, created_at)
                VALUES (@b, @a, @tenant, 'success', 'waiting', clock_timestamp())
            ), target AS (UPDATE tasks SET has_dependents = true WHERE id = @a)
            UPDATE tasks SET unmet_dependencies = unmet_dependencies + 1 WHERE id = @b RETURNING 1
            """, ("a", Guid.Parse(a.Id)), ("b", Guid.Parse(b.Id)), ("tenant", scene.Tenant));

        var result = await scene.RunAsync("circular_dependencies");

        var issue = Assert.Single(result.Issues);
        Assert.Equal(Severity.Critical, issue.Severity);
        Assert.Equal($"dependency:{b.Id}->{a.Id}", issue.Subject);
        var dry = await scene.FixAsync(result, dryRun: true);
        Assert.Equal(2L, await env.ScalarOnAsync<long>(env.QueueDatabase, "SELECT count(*) FROM task_dependencies WHERE tenant_id = @t", ("t", scene.Tenant)));
        Assert.Equal(0, dry.Fixed);

        var fixedIt = await scene.FixAsync(result);

        Assert.Equal(1, fixedIt.Fixed);
        Assert.Equal(1L, await env.ScalarOnAsync<long>(env.QueueDatabase, "SELECT count(*) FROM task_dependencies WHERE tenant_id = @t", ("t", scene.Tenant)));
        Assert.Equal(0, (await scene.Queue.GetTaskAsync(new GetTaskRequest { TaskId = b.Id })).Task.UnmetDependencies);
        Assert.Equal(1, (await scene.Queue.GetTaskAsync(new GetTaskRequest { TaskId = a.Id })).Task.UnmetDependencies);
        Assert.Empty((await scene.RunAsync("circular_dependencies")).Issues);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_running_task_past_its_timeout_is_found_and_timed_out()
    {
        var scene = await ConsistencyScene.StartAsync(env, "timeout");
        var worker = await scene.RegisterAsync("timeout.work");
        var task = await scene.RunningTaskAsync(worker, "timeout.work", timeoutSeconds: 60);
        // Its own clock says it started an hour ago; the queue's maintenance (which reads deadline_at) does not act.
        await env.ScalarOnAsync<int>(env.QueueDatabase, "UPDATE tasks SET started_at = started_at - interval '1 hour' WHERE id = @id RETURNING 1",
            ("id", Guid.Parse(task.Id)));

        var result = await scene.RunAsync("timeout_violations");

        var issue = Assert.Single(result.Issues);
        Assert.Equal($"task:{task.Id}", issue.Subject);
        Assert.Equal("60", issue.Details["timeout_seconds"]);
        await scene.FixAsync(result, dryRun: true);
        Assert.Equal(TaskStatus.Running, (await scene.Queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Status);

        var fixedIt = await scene.FixAsync(result);

        Assert.Equal(1, fixedIt.Fixed);
        var after = (await scene.Queue.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task;
        Assert.Equal(TaskStatus.Timeout, after.Status);
        Assert.Equal("TASK_TIMEOUT", after.Error.Code);
        Assert.Empty((await scene.RunAsync("timeout_violations")).Issues);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_online_in_PostgreSQL_without_a_Redis_heartbeat_is_found_and_marked_lost()
    {
        var scene = await ConsistencyScene.StartAsync(env, "liveness");
        var worker = await scene.RegisterAsync("liveness.work");
        // PostgreSQL keeps it online; Redis has no heartbeat and no deadline for it, and the registry's own passes do not look
        // (its PostgreSQL heartbeat is in the future).
        await env.ScalarOnAsync<int>(env.RegistryDatabase, "UPDATE workers SET last_heartbeat_at = now() + interval '1 hour' WHERE id = @id RETURNING 1",
            ("id", Guid.Parse(worker.Id)));
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString))
        {
            await redis.GetDatabase().KeyDeleteAsync(WorkerMirror.AliveKey(scene.Tenant, worker.Id));
            await redis.GetDatabase().SortedSetRemoveAsync(WorkerMirror.DeadlinesKey(scene.Tenant), $"{scene.Tenant}/{worker.Id}");
        }

        var result = await scene.RunAsync("redis_postgres_disagreement");

        var issue = Assert.Single(result.Issues);
        Assert.Equal($"worker:{worker.Id}", issue.Subject);
        Assert.Equal("false", issue.Details["alive_in_redis"]);
        Assert.Equal("MarkLost", issue.Details["action"]);
        await scene.FixAsync(result, dryRun: true);
        Assert.Equal("online", await env.ScalarOnAsync<string>(env.RegistryDatabase, "SELECT status FROM workers WHERE id = @id", ("id", Guid.Parse(worker.Id))));

        var fixedIt = await scene.FixAsync(result);

        Assert.Equal(1, fixedIt.Fixed);
        Assert.Equal("offline", await env.ScalarOnAsync<string>(env.RegistryDatabase, "SELECT status FROM workers WHERE id = @id", ("id", Guid.Parse(worker.Id))));
        Assert.Empty((await scene.RunAsync("redis_postgres_disagreement")).Issues);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_check_whose_service_is_unreachable_reports_an_error_and_the_others_still_run()
    {
        var scene = await ConsistencyScene.StartAsync(env, "down", new Dictionary<string, string?> { ["services:queue:grpc:0"] = "http://127.0.0.1:1" });

        var run = await scene.Consistency.RunAllChecksAsync(new RunAllChecksRequest());

        Assert.Equal(CheckNames, run.Results.Select(r => r.Check.Name));
        Assert.All(run.Results.Where(r => r.Check.Name != "redis_postgres_disagreement"), r => Assert.Contains("Unavailable", r.Error, StringComparison.Ordinal));
        Assert.Equal("", run.Results.Single(r => r.Check.Name == "redis_postgres_disagreement").Error);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Bad_input_is_refused_with_field_violations_and_unknown_names_and_runs_are_not_found()
    {
        var client = env.ConsistencyClient();
        var unknownCheck = await ConsistencyScene.RefusedAsync(() => client.RunCheckAsync(new RunCheckRequest { Name = "nope" }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("CHECK_NOT_FOUND", unknownCheck.GetDetail<ErrorInfo>()!.Reason);
        var noName = await ConsistencyScene.RefusedAsync(() => client.RunCheckAsync(new RunCheckRequest()).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal("name", Assert.Single(noName.GetDetail<BadRequest>()!.FieldViolations).Field);

        var malformed = await ConsistencyScene.RefusedAsync(() => client.FixIssuesAsync(new FixIssuesRequest { RunId = "run-1", IssueIds = { "i-1" } }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["run_id", "issue_ids[0]"], malformed.GetDetail<BadRequest>()!.FieldViolations.Select(f => f.Field));

        var unknownRun = await ConsistencyScene.RefusedAsync(() => client.FixIssuesAsync(new FixIssuesRequest { RunId = Guid.NewGuid().ToString() }).ResponseAsync,
            StatusCode.NotFound);
        Assert.Equal("CHECK_RUN_NOT_FOUND", unknownRun.GetDetail<ErrorInfo>()!.Reason);

        var run = await client.RunCheckAsync(new RunCheckRequest { Name = "circular_dependencies" });
        var unknownIssue = await ConsistencyScene.RefusedAsync(() => client.FixIssuesAsync(new FixIssuesRequest
        {
            RunId = run.Result.RunId, IssueIds = { Guid.NewGuid().ToString() },
        }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("CONSISTENCY_ISSUE_NOT_FOUND", unknownIssue.GetDetail<ErrorInfo>()!.Reason);
    }
}

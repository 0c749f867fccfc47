using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Lifeline.Testing;
using Microsoft.Extensions.Logging;
using static Lifeline.Recovery.Tests.RecoveryPlanTestSupport;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Bounds of the recovery service's input — counts first (quick, small refusals), texts the store can hold, exact
/// durations and timestamps, page tokens only as issued — and answers that are refusals, not failures: a duplicate
/// plan name is ALREADY_EXISTS without an error in the log; a started dead letter is retried by a plan.
/// </summary>
public sealed class RecoveryLimitsTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private const int SmallStatusBytes = 4096;
    // Quick even beside the whole suite on a loaded two-core machine; before the count-first checks these took 10–17 s.
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(6);

    private DisasterRecoveryService.DisasterRecoveryServiceClient Dr => env.DisasterRecoveryClient();

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    private Task<long> PlanRowsAsync() => env.ScalarAsync<long>("SELECT count(*) FROM dr_plans");

    private Task<string> IssuesAsync() =>
        env.ScalarAsync<string>("SELECT count(*) || ':' || count(*) FILTER (WHERE fixed) FROM consistency_issues");

    [Fact(Timeout = 120_000)]
    public async Task FixIssues_with_100000_issue_ids_is_refused_before_any_id_is_parsed()
    {
        var before = await IssuesAsync();
        var request = new FixIssuesRequest { RunId = Guid.NewGuid().ToString() };
        request.IssueIds.AddRange(Enumerable.Range(0, 100_000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(() => env.ConsistencyClient().FixIssuesAsync(request, deadline: Deadline).ResponseAsync);
        Assert.Equal(before, await IssuesAsync());

        var violation = Assert.Single(status.GetDetail<BadRequest>().FieldViolations);
        Assert.Equal("issue_ids", violation.Field);
        Assert.Contains("10000", violation.Description, StringComparison.Ordinal);
        Assert.Contains("100000", violation.Description, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task FixIssues_with_10000_malformed_ids_lists_only_the_first_problems()
    {
        var before = await IssuesAsync();
        var request = new FixIssuesRequest { RunId = "nope" };
        request.IssueIds.AddRange(Enumerable.Range(0, 10_000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(() => env.ConsistencyClient().FixIssuesAsync(request, deadline: Deadline).ResponseAsync);
        Assert.Equal(before, await IssuesAsync());

        var fields = status.Fields();
        Assert.InRange(fields.Count, 3, 13);
        Assert.Equal(["run_id", "issue_ids[0]"], fields.Take(2));
        Assert.Equal("issue_ids", fields[^1]);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_disaster_recovery_plan_with_100000_steps_or_targets_is_refused_before_any_is_checked()
    {
        var before = await PlanRowsAsync();
        var steps = new CreateDisasterRecoveryPlanRequest { Name = $"huge-{Guid.NewGuid():N}" };
        steps.Steps.AddRange(Enumerable.Range(0, 100_000).Select(_ => new DrStep()));
        var status = await RefusedSmallAndQuickAsync(() => Dr.CreateDisasterRecoveryPlanAsync(steps, deadline: Deadline).ResponseAsync);
        var violation = Assert.Single(status.GetDetail<BadRequest>().FieldViolations);
        Assert.Equal("steps", violation.Field);
        Assert.Contains("100000", violation.Description, StringComparison.Ordinal);

        var targets = new CreateDisasterRecoveryPlanRequest { Name = $"huge-{Guid.NewGuid():N}" };
        var step = new DrStep { Name = "backup", Type = DrStepType.Backup };
        step.Targets.AddRange(Enumerable.Range(0, 100_000).Select(i => $"db{i}"));
        targets.Steps.Add(step);
        status = await RefusedSmallAndQuickAsync(() => Dr.CreateDisasterRecoveryPlanAsync(targets, deadline: Deadline).ResponseAsync);
        Assert.Equal(["steps[0].targets"], status.Fields());

        var bad = new CreateDisasterRecoveryPlanRequest { Name = $"bad-{Guid.NewGuid():N}" };
        bad.Steps.AddRange(Enumerable.Range(0, 50).Select(_ => new DrStep()));
        status = await RefusedSmallAndQuickAsync(() => Dr.CreateDisasterRecoveryPlanAsync(bad, deadline: Deadline).ResponseAsync);
        Assert.InRange(status.Fields().Count, 2, 13);
        Assert.Equal("steps", status.Fields()[^1]);
        Assert.Equal(before, await PlanRowsAsync());
    }

    public static TheoryData<string, string> UnstorablePlans => new()
    {
        { "NUL in the name", "name" },
        { "NUL in the description", "description" },
        { "NUL in a step name", "steps[0].name" },
        { "NUL in a target", "steps[0].targets[0]" },
        { "negative step timeout", "steps[0].timeout" },
        { "denormal step timeout", "steps[0].timeout" },
    };

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(UnstorablePlans))]
    public async Task A_plan_the_store_cannot_hold_is_refused_on_the_field_and_writes_nothing(string @case, string field)
    {
        var before = await PlanRowsAsync();
        var request = new CreateDisasterRecoveryPlanRequest
        {
            Name = $"store-{Guid.NewGuid():N}",
            Steps = { new DrStep { Name = "notify", Type = DrStepType.Notification, Targets = { "ops" } } },
        };
        switch (@case)
        {
            case "NUL in the name": request.Name += "\0"; break;
            case "NUL in the description": request.Description = "a\0b"; break;
            case "NUL in a step name": request.Steps[0].Name = "n\0"; break;
            case "NUL in a target": request.Steps[0].Targets[0] = "o\0ps"; break;
            case "negative step timeout": request.Steps[0].Timeout = new Duration { Nanos = -1 }; break;
            case "denormal step timeout": request.Steps[0].Timeout = new Duration { Seconds = 1, Nanos = 1_000_000_000 }; break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }

        var status = await RefusedAsync(() => Dr.CreateDisasterRecoveryPlanAsync(request, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument);

        Assert.Equal([field], status.Fields());
        Assert.Equal(before, await PlanRowsAsync());
    }

    [Fact(Timeout = 120_000)]
    public async Task A_duplicate_plan_name_is_already_exists_and_logs_no_error()
    {
        var logs = new CapturedLogs();
        var instance = await env.StartRecoveryAsync(configure: b => b.Logging.AddProvider(logs));
        var client = env.DisasterRecoveryClient(instance);
        var request = new CreateDisasterRecoveryPlanRequest
        {
            Name = $"dup-{Guid.NewGuid():N}", Steps = { new DrStep { Name = "check", Type = DrStepType.Validation, Critical = true } },
        };
        var plan = (await client.CreateDisasterRecoveryPlanAsync(request, deadline: Deadline)).Plan;

        var duplicate = await RefusedAsync(() => client.CreateDisasterRecoveryPlanAsync(request, deadline: Deadline).ResponseAsync, StatusCode.AlreadyExists);

        Assert.Equal("DR_PLAN_EXISTS", duplicate.ErrorInfo().Reason);
        Assert.Equal(plan.Id, duplicate.ErrorInfo().Metadata["plan_id"]);
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM dr_plans WHERE name = @n", ("n", request.Name)));
        Assert.Empty(logs.AtLeast(LogLevel.Error));
    }

    [Fact(Timeout = 120_000)]
    public async Task Listings_refuse_page_tokens_they_did_not_issue_and_page_with_those_they_did()
    {
        for (var i = 0; i < 3; i++)
        {
            await Dr.CreateDisasterRecoveryPlanAsync(new CreateDisasterRecoveryPlanRequest
            {
                Name = $"page-{Guid.NewGuid():N}", Steps = { new DrStep { Name = "check", Type = DrStepType.Validation } },
            }, deadline: Deadline);
            await env.PlanClient().CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest { Error = Error(ErrorCategory.Validation) }, deadline: Deadline);
        }
        var states = env.SystemStateClient();
        await EventuallyAsync(async () => (await states.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 1 }, deadline: Deadline)).NextPageToken,
            token => token.Length > 0);

        var drToken = (await Dr.ListDisasterRecoveryPlansAsync(new ListDisasterRecoveryPlansRequest { PageSize = 1 }, deadline: Deadline)).NextPageToken;
        var planToken = (await env.PlanClient().ListRecoveryPlansAsync(new ListRecoveryPlansRequest { PageSize = 1 }, deadline: Deadline)).NextPageToken;
        var stateToken = (await states.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 1 }, deadline: Deadline)).NextPageToken;
        Assert.NotEmpty((await Dr.ListDisasterRecoveryPlansAsync(new ListDisasterRecoveryPlansRequest { PageSize = 1, PageToken = drToken }, deadline: Deadline)).Plans);
        Assert.NotEmpty((await env.PlanClient().ListRecoveryPlansAsync(new ListRecoveryPlansRequest { PageSize = 1, PageToken = planToken }, deadline: Deadline)).Plans);
        Assert.NotEmpty((await states.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 1, PageToken = stateToken }, deadline: Deadline)).States);

        var id = Guid.NewGuid();
        string[] neverIssued =
        [
            "AAAA", "////", $"99999999999999999_{id:N}", $"-1_{id:N}", $"1_{id:N}", $"1_{id}", $"{DateTime.MaxValue.Ticks}_{id}", drToken[..^1],
            new string('A', 100_000),
        ];
        var calls = new (string Name, Func<string, Task> Call)[]
        {
            ("ListDisasterRecoveryPlans", t => Dr.ListDisasterRecoveryPlansAsync(new ListDisasterRecoveryPlansRequest { PageToken = t }, deadline: Deadline).ResponseAsync),
            ("ListNotifications", t => Dr.ListNotificationsAsync(new ListNotificationsRequest { PageToken = t }, deadline: Deadline).ResponseAsync),
            ("ListRecoveryPlans", t => env.PlanClient().ListRecoveryPlansAsync(new ListRecoveryPlansRequest { PageToken = t }, deadline: Deadline).ResponseAsync),
            ("ListSystemStateHistory", t => states.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageToken = t }, deadline: Deadline).ResponseAsync),
            ("ListRecoveryActions", t => env.RecoveryClient().ListRecoveryActionsAsync(new ListRecoveryActionsRequest { PageToken = t }, deadline: Deadline).ResponseAsync),
        };
        foreach (var (name, call) in calls)
        {
            // Every listing refuses tokens never issued, and those of the other listings.
            foreach (var token in neverIssued.Concat([drToken, planToken, stateToken]).Where(t => !IssuedBy(name, t, drToken, planToken, stateToken)))
            {
                var error = await Assert.ThrowsAsync<RpcException>(() => call(token));
                Assert.True(error.StatusCode == StatusCode.InvalidArgument, $"{name} answered {error.StatusCode} to '{token[..Math.Min(token.Length, 40)]}'");
                Assert.Equal(["page_token"], error.GetRpcStatus()!.Fields());
            }
        }
        var badSince = await RefusedAsync(() => env.RecoveryClient().ListRecoveryActionsAsync(
            new ListRecoveryActionsRequest { Since = new Timestamp { Seconds = long.MaxValue } }, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["since"], badSince.Fields());
    }

    [Fact(Timeout = 120_000)]
    public async Task A_plan_retries_a_dead_letter_that_had_started()
    {
        var type = NewType("plan.started");
        var task = await env.EnqueueAsync(type, maxRetries: 0);
        var worker = (await env.RegistryClient().RegisterWorkerAsync(new RegisterWorkerRequest
        {
            Name = $"started-{Guid.NewGuid():N}", Type = WorkerType.Standalone, Capabilities = { type },
        }, deadline: Deadline)).Worker;
        var leased = Assert.Single((await env.QueueClient().LeaseTasksAsync(new LeaseTasksRequest
        {
            WorkerId = worker.Id, TaskTypes = { type }, Start = true, Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)),
        }, deadline: Deadline)).Tasks);
        Assert.Equal(Queue.V1.TaskStatus.Running, leased.Status);
        var dead = (await env.QueueClient().FailTaskAsync(new FailTaskRequest
        {
            TaskId = task.Id, FencingToken = leased.FencingToken, Error = new ErrorDetail { Code = "HTTP_503", Retryable = true },
        }, deadline: Deadline)).Task;
        Assert.Equal(Queue.V1.TaskStatus.DeadLettered, dead.Status);

        var plan = (await env.PlanClient().CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest
        {
            Error = Error(ErrorCategory.Transient, code: "HTTP_503", taskId: task.Id),
        }, deadline: Deadline)).Plan;
        var executed = (await env.PlanClient().ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = plan.Id }, deadline: Deadline)).Plan;

        Assert.Equal(PlanStatus.Recovered, executed.Status);
        Assert.Contains("redrove", executed.Actions[0].Result);
        Assert.Equal(Queue.V1.TaskStatus.Pending, (await env.QueueClient().GetTaskAsync(new GetTaskRequest { TaskId = task.Id }, deadline: Deadline)).Task.Status);
    }

    private static bool IssuedBy(string listing, string token, string drToken, string planToken, string stateToken) =>
        (listing == "ListDisasterRecoveryPlans" && token == drToken)
        || (listing == "ListRecoveryPlans" && token == planToken)
        || (listing == "ListSystemStateHistory" && token == stateToken);

    private static async Task<Google.Rpc.Status> RefusedSmallAndQuickAsync(Func<Task> call)
    {
        var (error, elapsed) = await Refusals.TimedAsync(call, StatusCode.InvalidArgument);
        Assert.True(elapsed < Quick, $"the refusal took {elapsed}");
        Assert.True(error.WireBytes() < SmallStatusBytes, $"the refusal took {error.WireBytes()} bytes of trailers");
        return error.GetRpcStatus()!;
    }
}

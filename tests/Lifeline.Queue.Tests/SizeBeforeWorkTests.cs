using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Testing;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// Size before work: a request with more items than an RPC takes is refused at once with one violation naming the
/// field, the limit and the count; one with many bad items lists the first problems only. Either way the refusal
/// is quick and small (a proxy in front must never see megabytes of trailers), and nothing is written.
/// </summary>
public sealed class SizeBeforeWorkTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private const int SmallStatusBytes = 4096;
    // Quick even beside the whole suite on a loaded two-core machine; before the count-first checks these took 10–17 s.
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(6);

    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    [Fact(Timeout = 120_000)]
    public async Task EnqueueTasks_with_2000_invalid_tasks_is_refused_quickly_listing_only_the_first_problems()
    {
        var request = new EnqueueTasksRequest();
        request.Tasks.AddRange(Enumerable.Range(0, 2000).Select(i => new BatchTask { Key = $"k{i}", Task = Spec("not a type!", "[]") }));

        var status = await RefusedSmallAndQuickAsync(() => Client.EnqueueTasksAsync(request, deadline: Deadline).ResponseAsync);

        var fields = status.GetDetail<BadRequest>().FieldViolations.Select(v => v.Field).ToList();
        Assert.InRange(fields.Count, 2, 12);
        Assert.Equal("tasks[0].task.type", fields[0]);
        Assert.Equal("tasks", fields[^1]);
        Assert.Contains("not checked", status.GetDetail<BadRequest>().FieldViolations[^1].Description, StringComparison.Ordinal);
    }

    [Fact(Timeout = 120_000)]
    public async Task EnqueueTasks_over_the_limit_is_refused_before_any_task_is_checked()
    {
        var request = new EnqueueTasksRequest();
        request.Tasks.AddRange(Enumerable.Range(0, 10_001).Select(_ => new BatchTask { Task = Spec("") }));

        var status = await RefusedSmallAndQuickAsync(() => Client.EnqueueTasksAsync(request, deadline: Deadline).ResponseAsync);

        AssertOneCountViolation(status, "tasks", "10000", "10001");
    }

    [Fact(Timeout = 120_000)]
    public async Task A_task_with_thousands_of_bad_dependencies_lists_only_the_first_problems()
    {
        var item = new BatchTask { Key = "a", Task = Spec(NewType("limits.deps")) };
        item.DependsOn.AddRange(Enumerable.Range(0, 5000).Select(_ => new BatchDependency { TaskId = "nope" }));
        var request = new EnqueueTasksRequest { Tasks = { item } };

        var status = await RefusedSmallAndQuickAsync(() => Client.EnqueueTasksAsync(request, deadline: Deadline).ResponseAsync);

        Assert.InRange(status.GetDetail<BadRequest>().FieldViolations.Count, 2, 13);
    }

    [Fact(Timeout = 120_000)]
    public async Task RedriveDeadLetters_with_1000_malformed_ids_is_refused_quickly_listing_only_the_first_problems()
    {
        var request = new RedriveDeadLettersRequest();
        request.TaskIds.AddRange(Enumerable.Range(0, 1000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(() => Client.RedriveDeadLettersAsync(request, deadline: Deadline).ResponseAsync);

        var violations = status.GetDetail<BadRequest>().FieldViolations;
        Assert.InRange(violations.Count, 2, 12);
        Assert.Equal("task_ids[0]", violations[0].Field);
        Assert.Equal("task_ids", violations[^1].Field);
    }

    [Fact(Timeout = 120_000)]
    public async Task RedriveDeadLetters_over_the_limit_is_refused_before_any_id_is_parsed()
    {
        var request = new RedriveDeadLettersRequest();
        request.TaskIds.AddRange(Enumerable.Range(0, 100_000).Select(i => $"not-a-uuid-{i}"));

        var status = await RefusedSmallAndQuickAsync(() => Client.RedriveDeadLettersAsync(request, deadline: Deadline).ResponseAsync);

        AssertOneCountViolation(status, "task_ids", "1000", "100000");
    }

    [Fact(Timeout = 120_000)]
    public async Task CompleteTasks_over_the_limit_is_refused_before_any_completion_is_checked()
    {
        var request = new CompleteTasksRequest();
        request.Completions.AddRange(Enumerable.Range(0, 100_000).Select(_ => new TaskCompletion { TaskId = "x", Result = "{" }));

        var status = await RefusedSmallAndQuickAsync(() => Client.CompleteTasksAsync(request, deadline: Deadline).ResponseAsync);

        AssertOneCountViolation(status, "completions", "1000", "100000");
    }

    [Fact(Timeout = 120_000)]
    public async Task WatchTasks_with_100000_event_types_is_refused_before_any_is_checked()
    {
        var request = new WatchTasksRequest();
        request.EventTypes.AddRange(Enumerable.Range(0, 100_000).Select(i => $"bogus-{i}"));

        var status = await RefusedSmallAndQuickAsync(async () =>
        {
            using var call = Client.WatchTasks(request, deadline: Deadline);
            await call.ResponseStream.MoveNext();
        });

        AssertOneCountViolation(status, "event_types", "100", "100000");
    }

    private async Task<Google.Rpc.Status> RefusedSmallAndQuickAsync(Func<Task> call)
    {
        var before = await env.CountRowsAsync();
        var (error, elapsed) = await Refusals.TimedAsync(call, StatusCode.InvalidArgument);
        Assert.True(elapsed < Quick, $"the refusal took {elapsed}");
        Assert.True(error.WireBytes() < SmallStatusBytes, $"the refusal took {error.WireBytes()} bytes of trailers");
        var status = error.GetRpcStatus()!;
        Assert.Equal("INVALID_ARGUMENT", status.GetDetail<ErrorInfo>().Reason);
        Assert.Equal(before, await env.CountRowsAsync());
        return status;
    }

    private static void AssertOneCountViolation(Google.Rpc.Status status, string field, string limit, string count)
    {
        var violation = Assert.Single(status.GetDetail<BadRequest>().FieldViolations);
        Assert.Equal(field, violation.Field);
        Assert.Contains(limit, violation.Description, StringComparison.Ordinal);
        Assert.Contains(count, violation.Description, StringComparison.Ordinal);
    }
}

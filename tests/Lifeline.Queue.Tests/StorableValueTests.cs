using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// Values the store could not hold are refused as INVALID_ARGUMENT on their field — never INTERNAL — and change
/// nothing: JSON numbers beyond PostgreSQL's numeric, unstorable strings in JSON, negative durations however small.
/// Values at the edge of what PostgreSQL holds are accepted and stored.
/// </summary>
public sealed class StorableValueTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    public static TheoryData<string> UnstorableJson => new()
    {
        """{"a":1e999999}""",
        """{"a":-1e999999}""",
        """{"a":1e131072}""",
        """{"a":10e131071}""",
        """{"a":1e-16384}""",
        """{"a":1.5e-16383}""",
        """{"a":0e-16384}""",
        """{"a":1e-999999999999999999999}""",
        """{"a":0e2000000000}""",
        """{"a":[1,{"b":1E+999999}]}""",
        """{"a":"\ud800"}""",
        """{"\udc00":1}""",
        """{"a":"x\u0000y"}""",
    };

    public static TheoryData<string> StorableEdgeJson => new()
    {
        """{"a":1e131071}""",
        """{"a":9.9e131071}""",
        """{"a":0.1e131072}""",
        """{"a":1e-16383}""",
        """{"a":0e99999999}""",
        """{"a":-0.0}""",
        """{"a":"\ud83d\ude00 and a \\u0000 that is text"}""",
    };

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(UnstorableJson))]
    public async Task A_payload_PostgreSQL_cannot_store_is_refused_on_the_field_and_writes_nothing(string payload)
    {
        var before = await env.CountRowsAsync();
        var status = await InvalidAsync(() => Client.EnqueueTaskAsync(
            new EnqueueTaskRequest { Task = Spec(NewType("json.payload"), payload) }, deadline: Deadline).ResponseAsync);
        Assert.Equal("task.payload", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);
        Assert.Equal(before, await env.CountRowsAsync());

        // The same in a batch, next to a valid task: nothing of the batch is written.
        var type = NewType("json.batch");
        var batch = new EnqueueTasksRequest { Tasks = { new BatchTask { Task = Spec(type) }, new BatchTask { Task = Spec(type, payload) } } };
        status = await InvalidAsync(() => Client.EnqueueTasksAsync(batch, deadline: Deadline).ResponseAsync);
        Assert.Equal("tasks[1].task.payload", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(UnstorableJson))]
    public async Task A_result_PostgreSQL_cannot_store_is_refused_and_the_task_stays_with_its_holder(string result)
    {
        var type = NewType("json.result");
        var task = (await Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) }, deadline: Deadline)).Task;
        var leased = Assert.Single((await Client.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = "w", TaskTypes = { type } }, deadline: Deadline)).Tasks);
        var before = await env.CountRowsAsync();
        var row = await RowAsync(task.Id);

        var status = await InvalidAsync(() => Client.CompleteTaskAsync(
            new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = result }, deadline: Deadline).ResponseAsync);
        Assert.Equal("result", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);

        var batch = await InvalidAsync(() => Client.CompleteTasksAsync(new CompleteTasksRequest
        {
            Completions = { new TaskCompletion { TaskId = task.Id, FencingToken = leased.FencingToken, Result = result } },
        }, deadline: Deadline).ResponseAsync);
        Assert.Equal("completions[0].result", Assert.Single(batch.GetDetail<BadRequest>().FieldViolations).Field);

        Assert.Equal(before, await env.CountRowsAsync());
        Assert.Equal(row, await RowAsync(task.Id));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = "1" }, deadline: Deadline);
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(StorableEdgeJson))]
    public async Task JSON_at_the_edge_of_what_PostgreSQL_holds_is_stored(string json)
    {
        var type = NewType("json.edge");
        var task = (await Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, json) }, deadline: Deadline)).Task;
        var leased = Assert.Single((await Client.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = "w", TaskTypes = { type } }, deadline: Deadline)).Tasks);
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = json }, deadline: Deadline);
        Assert.True(await env.ScalarAsync<bool>("SELECT payload = @json::jsonb AND result = @json::jsonb FROM tasks WHERE id = @id",
            ("id", Guid.Parse(task.Id)), ("json", json)));
    }

    [Fact(Timeout = 120_000)]
    public async Task Negative_durations_however_small_are_refused()
    {
        var minusOneNano = new Duration { Seconds = 0, Nanos = -1 };
        var before = await env.CountRowsAsync();
        var cases = new (string Field, Func<Task> Call)[]
        {
            ("task.retry_policy.initial_interval", () => Client.EnqueueTaskAsync(new EnqueueTaskRequest
            {
                Task = Spec(NewType("dur"), retry: new RetryPolicy { InitialInterval = minusOneNano }),
            }, deadline: Deadline).ResponseAsync),
            ("task.retry_policy.maximum_interval", () => Client.EnqueueTaskAsync(new EnqueueTaskRequest
            {
                Task = Spec(NewType("dur"), retry: new RetryPolicy { InitialInterval = new Duration(), MaximumInterval = minusOneNano }),
            }, deadline: Deadline).ResponseAsync),
            ("wait", () => Client.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = "w", TaskTypes = { "t" }, Wait = minusOneNano }, deadline: Deadline).ResponseAsync),
            ("lease_duration", () => Client.LeaseTasksAsync(new LeaseTasksRequest
            {
                WorkerId = "w", TaskTypes = { "t" }, LeaseDuration = new Duration { Seconds = 0, Nanos = 999_999_999 },
            }, deadline: Deadline).ResponseAsync),
            ("wait", () => Client.LeaseTasksAsync(new LeaseTasksRequest
            {
                WorkerId = "w", TaskTypes = { "t" }, Wait = new Duration { Seconds = 30, Nanos = 1 },
            }, deadline: Deadline).ResponseAsync),
        };
        foreach (var (field, call) in cases)
        {
            var status = await InvalidAsync(call);
            Assert.Equal(field, Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);
        }
        Assert.Equal(before, await env.CountRowsAsync());
    }

    private Task<string> RowAsync(string id) =>
        env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(id)));

    private static async Task<Google.Rpc.Status> InvalidAsync<T>(Func<Task<T>> call)
    {
        var status = await RefusedAsync(call, StatusCode.InvalidArgument);
        Assert.Equal("INVALID_ARGUMENT", status.GetDetail<ErrorInfo>().Reason);
        return status;
    }

    private static async Task<Google.Rpc.Status> InvalidAsync(Func<Task> call) =>
        await InvalidAsync(async () => { await call(); return 0; });
}

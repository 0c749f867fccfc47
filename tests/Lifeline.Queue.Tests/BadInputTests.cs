using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// The bad-input matrix: every malformed request is refused with INVALID_ARGUMENT, a BadRequest field
/// violation on the exact field path and ErrorInfo{domain "lifeline"}, and writes nothing to the store.
/// Unknown ids are NOT_FOUND (TASK_NOT_FOUND); operations in the wrong state are FAILED_PRECONDITION
/// (INVALID_TASK_STATE) naming the current state.
/// </summary>
public sealed class BadInputTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private delegate Task Call(QueueService.QueueServiceClient client, string type);

    // case name → (the call, given a fresh valid task type; the field paths the refusal must name, exactly).
    private static readonly Dictionary<string, (Call Call, string[] Fields)> Matrix = new()
    {
        // ---- EnqueueTask ----
        ["enqueue: empty type"] = (
            (c, _) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec("") }).ResponseAsync, ["task.type"]),
        ["enqueue: type with a space"] = (
            (c, _) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec("has space") }).ResponseAsync, ["task.type"]),
        ["enqueue: no task"] = (
            (c, _) => c.EnqueueTaskAsync(new EnqueueTaskRequest()).ResponseAsync, ["task"]),
        ["enqueue: negative max_retries"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, maxRetries: -1) }).ResponseAsync, ["task.max_retries"]),
        ["enqueue: zero timeout"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, timeoutSeconds: 0) }).ResponseAsync, ["task.timeout_seconds"]),
        ["enqueue: negative timeout"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, timeoutSeconds: -5) }).ResponseAsync, ["task.timeout_seconds"]),
        ["enqueue: payload not JSON"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, "not json {") }).ResponseAsync, ["task.payload"]),
        ["enqueue: payload a JSON array"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, "[1,2,3]") }).ResponseAsync, ["task.payload"]),
        ["enqueue: payload a JSON string"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, "\"text\"") }).ResponseAsync, ["task.payload"]),
        ["enqueue: payload a JSON number"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(t, "42") }).ResponseAsync, ["task.payload"]),
        ["enqueue: unknown backoff strategy"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest
            {
                Task = Spec(t, retry: new RetryPolicy { Backoff = (BackoffStrategy)42 }),
            }).ResponseAsync, ["task.retry_policy.backoff"]),
        ["enqueue: workflow_id with a space"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = WithWorkflow(Spec(t), "order 42") }).ResponseAsync, ["task.workflow_id"]),
        ["enqueue: workflow_id of 201 characters"] = (
            (c, t) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = WithWorkflow(Spec(t), new string('w', 201)) }).ResponseAsync, ["task.workflow_id"]),
        ["enqueue: every field wrong at once"] = (
            (c, _) => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec("", "[]", maxRetries: 101, timeoutSeconds: 0) }).ResponseAsync,
            ["task.type", "task.payload", "task.max_retries", "task.timeout_seconds"]),

        // ---- malformed or missing task ids ----
        ["get: malformed id"] = ((c, _) => c.GetTaskAsync(new GetTaskRequest { TaskId = "not-a-uuid" }).ResponseAsync, ["task_id"]),
        ["get: missing id"] = ((c, _) => c.GetTaskAsync(new GetTaskRequest()).ResponseAsync, ["task_id"]),
        ["start: malformed id"] = (
            (c, _) => c.StartTaskAsync(new StartTaskRequest { TaskId = "not-a-uuid", FencingToken = 1 }).ResponseAsync, ["task_id"]),
        ["complete: malformed id"] = (
            (c, _) => c.CompleteTaskAsync(new CompleteTaskRequest { TaskId = "not-a-uuid", FencingToken = 1 }).ResponseAsync, ["task_id"]),
        ["cancel: malformed id"] = ((c, _) => c.CancelTaskAsync(new CancelTaskRequest { TaskId = "not-a-uuid" }).ResponseAsync, ["task_id"]),
        ["history: malformed id"] = ((c, _) => c.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = "not-a-uuid" }).ResponseAsync, ["task_id"]),

        // ---- fencing token ----
        ["complete: fencing_token 0"] = (
            (c, _) => c.CompleteTaskAsync(new CompleteTaskRequest { TaskId = Guid.NewGuid().ToString(), FencingToken = 0 }).ResponseAsync,
            ["fencing_token"]),
        ["complete: result not JSON"] = (
            (c, _) => c.CompleteTaskAsync(new CompleteTaskRequest { TaskId = Guid.NewGuid().ToString(), FencingToken = 1, Result = "{nope" }).ResponseAsync,
            ["result"]),

        // ---- ListTasks ----
        ["list: page_size -1"] = ((c, _) => c.ListTasksAsync(new ListTasksRequest { PageSize = -1 }).ResponseAsync, ["page_size"]),
        ["list: page_size 1001"] = ((c, _) => c.ListTasksAsync(new ListTasksRequest { PageSize = 1001 }).ResponseAsync, ["page_size"]),
        ["list: unknown status"] = ((c, _) => c.ListTasksAsync(new ListTasksRequest { Status = (TaskStatus)99 }).ResponseAsync, ["status"]),
        ["list: invalid workflow_id"] = ((c, _) => c.ListTasksAsync(new ListTasksRequest { WorkflowId = "no spaces please" }).ResponseAsync, ["workflow_id"]),
        ["list: malformed page_token"] = (
            (c, _) => c.ListTasksAsync(new ListTasksRequest { PageToken = "definitely not a token!" }).ResponseAsync, ["page_token"]),
        ["list: page_token of the wrong length"] = (
            (c, _) => c.ListTasksAsync(new ListTasksRequest { PageToken = "AAAA" }).ResponseAsync, ["page_token"]),
        ["history: malformed page_token"] = (
            (c, _) => c.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = Guid.NewGuid().ToString(), PageToken = "x" }).ResponseAsync,
            ["page_token"]),
        ["history: page_size 1001"] = (
            (c, _) => c.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = Guid.NewGuid().ToString(), PageSize = 1001 }).ResponseAsync,
            ["page_size"]),

        // ---- RecoverTask ----
        ["recover: missing task_id"] = ((c, _) => c.RecoverTaskAsync(Recover(id: "")).ResponseAsync, ["task_id"]),
        ["recover: malformed task_id"] = ((c, _) => c.RecoverTaskAsync(Recover(id: "not-a-uuid")).ResponseAsync, ["task_id"]),
        ["recover: fencing_token 0"] = ((c, _) => c.RecoverTaskAsync(Recover(token: 0)).ResponseAsync, ["fencing_token"]),
        ["recover: negative fencing_token"] = ((c, _) => c.RecoverTaskAsync(Recover(token: -3)).ResponseAsync, ["fencing_token"]),
        ["recover: action unspecified"] = ((c, _) => c.RecoverTaskAsync(Recover(action: RecoveryAction.Unspecified)).ResponseAsync, ["action"]),
        ["recover: unknown action"] = ((c, _) => c.RecoverTaskAsync(Recover(action: (RecoveryAction)9)).ResponseAsync, ["action"]),
        ["recover: no reason"] = ((c, _) => c.RecoverTaskAsync(Recover(withoutReason: true)).ResponseAsync, ["reason"]),
        ["recover: reason without a code"] = (
            (c, _) => c.RecoverTaskAsync(Recover(reason: new Common.V1.ErrorDetail { Message = "lost" })).ResponseAsync, ["reason.code"]),
        ["recover: resume_checkpoint_id not a UUID"] = (
            (c, _) => c.RecoverTaskAsync(Recover(checkpoint: "checkpoint-7")).ResponseAsync, ["resume_checkpoint_id"]),
        ["recover: every field wrong at once"] = (
            (c, _) => c.RecoverTaskAsync(Recover("x", 0, RecoveryAction.Unspecified, new Common.V1.ErrorDetail(), "nope")).ResponseAsync,
            ["task_id", "fencing_token", "action", "reason.code", "resume_checkpoint_id"]),

        // ---- AddDependency ----
        ["add dependency: unknown type"] = (
            (c, _) => c.AddDependencyAsync(new AddDependencyRequest
            {
                TaskId = Guid.NewGuid().ToString(), DependsOnTaskId = Guid.NewGuid().ToString(), Type = (DependencyType)7,
            }).ResponseAsync, ["type"]),
        ["add dependency: on itself"] = (
            (c, _) =>
            {
                var id = Guid.NewGuid().ToString();
                return c.AddDependencyAsync(new AddDependencyRequest { TaskId = id, DependsOnTaskId = id }).ResponseAsync;
            }, ["depends_on_task_id"]),

        // ---- LeaseTasks ----
        ["lease: no worker_id"] = ((c, t) => c.LeaseTasksAsync(Lease(t, worker: "")).ResponseAsync, ["worker_id"]),
        ["lease: no task_types"] = ((c, _) => c.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = "w1" }).ResponseAsync, ["task_types"]),
        ["lease: max_tasks 501"] = ((c, t) => c.LeaseTasksAsync(Lease(t, max: 501)).ResponseAsync, ["max_tasks"]),
        ["lease: max_tasks -1"] = ((c, t) => c.LeaseTasksAsync(Lease(t, max: -1)).ResponseAsync, ["max_tasks"]),
        ["lease: wait 31s"] = ((c, t) => c.LeaseTasksAsync(Lease(t, waitSeconds: 31)).ResponseAsync, ["wait"]),
        ["lease: lease_duration 0s"] = ((c, t) => c.LeaseTasksAsync(Lease(t, leaseSeconds: 0)).ResponseAsync, ["lease_duration"]),
        ["lease: invalid task type"] = ((c, _) => c.LeaseTasksAsync(Lease("bad type!")).ResponseAsync, ["task_types[0]"]),

        // ---- EnqueueTasks (batches are all or nothing) ----
        ["batch: empty"] = ((c, _) => c.EnqueueTasksAsync(new EnqueueTasksRequest()).ResponseAsync, ["tasks"]),
        ["batch: one of many tasks invalid"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t), Item(""), Item(t), Item(t))).ResponseAsync, ["tasks[1].task.type"]),
        ["batch: unknown task_key"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t, "a", DependsOnKey("nope")), Item(t, "b"))).ResponseAsync,
            ["tasks[0].depends_on[0].task_key"]),
        ["batch: self-dependency"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t, "b"), Item(t, "a", DependsOnKey("a")))).ResponseAsync,
            ["tasks[1].depends_on[0].task_key"]),
        ["batch: duplicate keys"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t, "a"), Item(t, "a"))).ResponseAsync, ["tasks[1].key"]),
        ["batch: malformed dependency task_id"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t, "a", new BatchDependency { TaskId = "not-a-uuid" }))).ResponseAsync,
            ["tasks[0].depends_on[0].task_id"]),
        ["batch: dependency with no target"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t, "a", new BatchDependency()))).ResponseAsync, ["tasks[0].depends_on[0]"]),
        ["batch: invalid workflow_id"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t), new BatchTask { Task = WithWorkflow(Spec(t), "bad\u0000id") })).ResponseAsync,
            ["tasks[1].task.workflow_id"]),
        ["batch: unknown dependency type"] = (
            (c, t) => c.EnqueueTasksAsync(Batch(Item(t, "a"), Item(t, "b", new BatchDependency { TaskKey = "a", Type = (DependencyType)7 }))).ResponseAsync,
            ["tasks[1].depends_on[0].type"]),
    };

    public static TheoryData<string> Cases => new(Matrix.Keys);

    [Theory(Timeout = TestTimeouts.Default)]
    [MemberData(nameof(Cases))]
    public async Task Bad_input_is_refused_with_a_violation_on_the_exact_field_and_writes_nothing(string name)
    {
        var (call, fields) = Matrix[name];
        await AssertInvalidAsync(Client, c => call(c, NewType("bad")), fields);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_batch_with_one_invalid_task_among_many_creates_none_of_them()
    {
        var type = NewType("bad.batch");
        var items = Enumerable.Range(0, 200).Select(i => Item(type, $"k{i}")).ToArray();
        items[137].Task.TimeoutSeconds = 0;
        await AssertInvalidAsync(Client, c => c.EnqueueTasksAsync(Batch(items)).ResponseAsync, ["tasks[137].task.timeout_seconds"]);
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type", ("type", type)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_batch_whose_dependencies_form_a_cycle_is_refused_naming_the_cycle_and_creates_nothing()
    {
        var type = NewType("bad.cycle");
        var before = await env.CountRowsAsync();
        var status = await RefusedAsync(() => Client.EnqueueTasksAsync(Batch(
            Item(type, "a", DependsOnKey("c")), Item(type, "b", DependsOnKey("a")), Item(type, "c", DependsOnKey("b")))).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("DEPENDENCY_CYCLE", status.ErrorInfo().Reason);
        Assert.Equal("lifeline", status.ErrorInfo().Domain);
        Assert.Contains("a -> c -> b -> a", status.Message, StringComparison.Ordinal);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_payload_over_the_configured_limit_is_refused_and_writes_nothing()
    {
        var small = await env.StartInstanceAsync(new Dictionary<string, string?> { ["Queue:MaxPayloadBytes"] = "2048" });
        var type = NewType("bad.size");
        var payload = $$"""{"blob":"{{new string('x', 3 * 1024)}}"}""";

        var status = await AssertInvalidAsync(small.Client(), c => c.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, payload) }).ResponseAsync,
            ["task.payload"]);
        Assert.Contains("2048", status.BadRequest().FieldViolations[0].Description, StringComparison.Ordinal);

        // The same payload in a batch is refused too; just under the limit is accepted.
        await AssertInvalidAsync(small.Client(), c => c.EnqueueTasksAsync(Batch(Item(type), ItemWithPayload(type, payload))).ResponseAsync,
            ["tasks[1].task.payload"]);
        var fits = $$"""{"blob":"{{new string('x', 2000)}}"}""";
        var accepted = await small.Client().EnqueueAsync(Spec(type, fits));
        Assert.Equal("pending", await env.StatusAsync(accepted.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Unknown_task_ids_are_not_found_with_reason_TASK_NOT_FOUND()
    {
        var before = await env.CountRowsAsync();
        var id = Guid.NewGuid().ToString();
        var calls = new (string Name, Func<Task> Call)[]
        {
            ("GetTask", () => Client.GetTaskAsync(new GetTaskRequest { TaskId = id }).ResponseAsync),
            ("CancelTask", () => Client.CancelTaskAsync(new CancelTaskRequest { TaskId = id }).ResponseAsync),
            ("CompleteTask", () => Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = id, FencingToken = 1 }).ResponseAsync),
            ("StartTask", () => Client.StartTaskAsync(new StartTaskRequest { TaskId = id, FencingToken = 1 }).ResponseAsync),
            ("GetTaskHistory", () => Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = id }).ResponseAsync),
            ("RecoverTask", () => Client.RecoverTaskAsync(Recover(id: id)).ResponseAsync),
        };
        foreach (var (name, call) in calls)
        {
            var status = await RefusedAsync(async () => { await call(); return name; }, StatusCode.NotFound);
            Assert.Equal("TASK_NOT_FOUND", status.ErrorInfo().Reason);
            Assert.Equal("lifeline", status.ErrorInfo().Domain);
            Assert.Equal(id, status.ErrorInfo().Metadata["resource_id"]);
        }
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Starting_a_completed_task_is_refused_naming_its_state_and_changes_nothing()
    {
        var type = NewType("bad.state");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken });
        var before = await env.CountRowsAsync();
        var row = await RowAsync(task.Id);

        var status = await RefusedAsync(() => Client.StartTaskAsync(new StartTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken }).ResponseAsync,
            StatusCode.FailedPrecondition);

        Assert.Equal("INVALID_TASK_STATE", status.ErrorInfo().Reason);
        Assert.Equal("lifeline", status.ErrorInfo().Domain);
        Assert.Equal("completed", status.ErrorInfo().Metadata["current_state"]);
        Assert.Contains("completed", status.Message, StringComparison.Ordinal);
        Assert.Equal(before, await env.CountRowsAsync());
        Assert.Equal(row, await RowAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cancelling_a_completed_task_is_refused_naming_its_state_and_changes_nothing()
    {
        var type = NewType("bad.cancel");
        var task = await Client.EnqueueAsync(Spec(type));
        var leased = Assert.Single(await Client.LeaseAsync("w1", type));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = task.Id, FencingToken = leased.FencingToken, Result = "1" });
        var before = await env.CountRowsAsync();
        var row = await RowAsync(task.Id);

        var status = await RefusedAsync(() => Client.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id, Reason = "too late" }).ResponseAsync,
            StatusCode.FailedPrecondition);

        Assert.Equal("INVALID_TASK_STATE", status.ErrorInfo().Reason);
        Assert.Equal("completed", status.ErrorInfo().Metadata["current_state"]);
        Assert.Contains("completed", status.Message, StringComparison.Ordinal);
        Assert.Equal(before, await env.CountRowsAsync());
        Assert.Equal(row, await RowAsync(task.Id));
        Assert.Equal("completed", await env.StatusAsync(task.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cancelling_a_cancelled_task_is_refused_naming_its_state()
    {
        var task = await Client.EnqueueAsync(Spec(NewType("bad.twice")));
        await Client.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id });
        var before = await env.CountRowsAsync();

        var status = await RefusedAsync(() => Client.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id }).ResponseAsync, StatusCode.FailedPrecondition);

        Assert.Equal("INVALID_TASK_STATE", status.ErrorInfo().Reason);
        Assert.Contains("cancelled", status.Message, StringComparison.Ordinal);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_valid_request_after_the_refusals_still_works()
    {
        // Guards the matrix itself: the helpers build valid requests once the bad field is fixed.
        var type = NewType("bad.control");
        var batch = await Client.EnqueueTasksAsync(Batch(Item(type, "a"), Item(type, "b", DependsOnKey("a"))));
        Assert.Equal(2, batch.CreatedCount);
        Assert.Equal(1, batch.Tasks[1].UnmetDependencies);
        var leased = Assert.Single((await Client.LeaseTasksAsync(Lease(type, max: 500, waitSeconds: 30))).Tasks);
        Assert.Equal(batch.Tasks[0].Id, leased.Id);
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = leased.Id, FencingToken = leased.FencingToken });
        Assert.Equal(2, (await Client.ListTasksAsync(new ListTasksRequest { Type = type, PageSize = 1000 })).Tasks.Count);
        var next = Assert.Single(await Client.LeaseAsync("w1", type));
        await Client.CompleteTaskAsync(new CompleteTaskRequest { TaskId = next.Id, FencingToken = next.FencingToken });
    }

    // ---- helpers ----

    private async Task<Google.Rpc.Status> AssertInvalidAsync(QueueService.QueueServiceClient client, Func<QueueService.QueueServiceClient, Task> call,
        string[] fields)
    {
        var before = await env.CountRowsAsync();
        var status = await RefusedAsync(async () => { await call(client); return 0; }, StatusCode.InvalidArgument);
        var badRequest = status.BadRequest();
        Assert.NotNull(badRequest);
        Assert.Equal(fields.Order(StringComparer.Ordinal), badRequest.FieldViolations.Select(v => v.Field).Order(StringComparer.Ordinal));
        Assert.All(badRequest.FieldViolations, v => Assert.False(string.IsNullOrWhiteSpace(v.Description)));
        Assert.Equal("lifeline", status.ErrorInfo().Domain);
        Assert.Equal("INVALID_ARGUMENT", status.ErrorInfo().Reason);
        Assert.Equal(before, await env.CountRowsAsync());
        return status;
    }

    private Task<string> RowAsync(string id) =>
        env.ScalarAsync<string>("SELECT row_to_json(t)::text FROM tasks t WHERE id = @id", ("id", Guid.Parse(id)));

    private static LeaseTasksRequest Lease(string type, string worker = "w1", int max = 1, double leaseSeconds = 30, double waitSeconds = 0)
    {
        var request = new LeaseTasksRequest
        {
            WorkerId = worker,
            MaxTasks = max,
            LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(leaseSeconds)),
            Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(waitSeconds)),
        };
        request.TaskTypes.Add(type);
        return request;
    }

    private static BatchTask Item(string type, string key = "", params BatchDependency[] dependsOn)
    {
        var item = new BatchTask { Key = key, Task = Spec(type) };
        item.DependsOn.AddRange(dependsOn);
        return item;
    }

    private static BatchTask ItemWithPayload(string type, string payload) => new() { Task = Spec(type, payload) };

    private static BatchDependency DependsOnKey(string key) => new() { TaskKey = key };


    private static readonly Common.V1.ErrorDetail WorkerLost = new() { Code = "WORKER_LOST" };

    /// <summary>A valid RecoverTask request unless a field is overridden.</summary>
    private static RecoverTaskRequest Recover(string? id = null, long token = 1, RecoveryAction action = RecoveryAction.Requeue,
        Common.V1.ErrorDetail? reason = null, string checkpoint = "", bool withoutReason = false)
    {
        var request = new RecoverTaskRequest
        {
            TaskId = id ?? Guid.NewGuid().ToString(), FencingToken = token, Action = action, ResumeCheckpointId = checkpoint, CountRetry = true,
        };
        if (!withoutReason)
        {
            request.Reason = reason ?? WorkerLost.Clone();
        }
        return request;
    }

    private static EnqueueTasksRequest Batch(params BatchTask[] items)
    {
        var request = new EnqueueTasksRequest();
        request.Tasks.AddRange(items);
        return request;
    }
}

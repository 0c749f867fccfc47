using System.Net;
using Grpc.Core;
using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.EndToEnd.Tests;

/// <summary>Every call through the gateway needs a credential; roles limit what it may do; tenants never see each other.</summary>
[Collection(SuiteCollection.Name)]
public sealed class SecurityTests(SuiteFixture suite)
{
    // No worker leases this type, so the tasks these tests enqueue stay where they are put.
    private const string TaskType = "e2e.security";

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_call_without_a_credential_is_unauthenticated_over_grpc_and_401_over_rest()
    {
        var getTask = await Assert.ThrowsAsync<RpcException>(async () =>
            await suite.Queue(keyName: null).GetTaskAsync(new GetTaskRequest { TaskId = Guid.NewGuid().ToString() }));
        Assert.Equal(StatusCode.Unauthenticated, getTask.StatusCode);

        var register = await Assert.ThrowsAsync<RpcException>(async () =>
            await suite.Registry(keyName: null).RegisterWorkerAsync(new RegisterWorkerRequest
            {
                Name = "e2e-anonymous", Type = WorkerType.Standalone, Capabilities = { TaskType },
            }));
        Assert.Equal(StatusCode.Unauthenticated, register.StatusCode);

        using var rest = await suite.RestAsync(HttpMethod.Get, $"/api/v1/tasks/{Guid.NewGuid()}", keyName: null);
        Assert.Equal(HttpStatusCode.Unauthorized, rest.StatusCode);

        using var restPost = await suite.RestAsync(HttpMethod.Post, "/api/v1/tasks", keyName: null, """{"task":{"type":"e2e.security"}}""");
        Assert.Equal(HttpStatusCode.Unauthorized, restPost.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_unknown_api_key_is_unauthenticated_over_grpc_and_401_over_rest()
    {
        var unknownKey = "llk_" + Guid.NewGuid().ToString("N");
        var grpc = await Assert.ThrowsAsync<RpcException>(async () =>
            await new QueueService.QueueServiceClient(suite.GrpcWithBearer(unknownKey)).GetQueueStatsAsync(new GetQueueStatsRequest()));
        Assert.Equal(StatusCode.Unauthenticated, grpc.StatusCode);

        using var rest = await suite.RestWithBearerAsync(HttpMethod.Get, "/api/v1/queue/stats", unknownKey);
        Assert.Equal(HttpStatusCode.Unauthorized, rest.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_reader_may_read_but_not_enqueue_or_lease_permission_denied_and_403()
    {
        var taskId = await suite.EnqueueOverRestAsync(Keys.DefaultWorker, TaskType, "{}");
        Assert.Equal(TaskStatus.Pending, (await suite.GetTaskAsync(taskId, Keys.DefaultReader)).Status);

        var reader = suite.Queue(Keys.DefaultReader);
        var enqueue = await Assert.ThrowsAsync<RpcException>(async () =>
            await reader.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = TaskType } }));
        Assert.Equal(StatusCode.PermissionDenied, enqueue.StatusCode);

        var lease = await Assert.ThrowsAsync<RpcException>(async () =>
            await reader.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = Guid.NewGuid().ToString(), TaskTypes = { TaskType } }));
        Assert.Equal(StatusCode.PermissionDenied, lease.StatusCode);

        using var restGet = await suite.RestAsync(HttpMethod.Get, $"/api/v1/tasks/{taskId}", Keys.DefaultReader);
        Assert.Equal(HttpStatusCode.OK, restGet.StatusCode);

        using var restPost = await suite.RestAsync(HttpMethod.Post, "/api/v1/tasks", Keys.DefaultReader, """{"task":{"type":"e2e.security"}}""");
        Assert.Equal(HttpStatusCode.Forbidden, restPost.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_may_not_call_operator_rpcs_permission_denied_and_403()
    {
        var taskId = await suite.EnqueueOverRestAsync(Keys.DefaultWorker, TaskType, "{}");
        var worker = suite.Queue(Keys.DefaultWorker);

        var cancel = await Assert.ThrowsAsync<RpcException>(async () =>
            await worker.CancelTaskAsync(new CancelTaskRequest { TaskId = taskId, Reason = "not mine to cancel" }));
        Assert.Equal(StatusCode.PermissionDenied, cancel.StatusCode);

        var redrive = await Assert.ThrowsAsync<RpcException>(async () =>
            await worker.RedriveDeadLettersAsync(new RedriveDeadLettersRequest { Type = TaskType }));
        Assert.Equal(StatusCode.PermissionDenied, redrive.StatusCode);

        using var restRedrive = await suite.RestAsync(HttpMethod.Post, "/api/v1/dead-letters:redrive", Keys.DefaultWorker, """{"type":"e2e.security"}""");
        Assert.Equal(HttpStatusCode.Forbidden, restRedrive.StatusCode);

        using var restCancel = await suite.RestAsync(HttpMethod.Post, $"/api/v1/tasks/{taskId}:cancel", Keys.DefaultWorker, "{}");
        Assert.Equal(HttpStatusCode.Forbidden, restCancel.StatusCode);

        // Refused calls change nothing.
        Assert.Equal(TaskStatus.Pending, (await suite.GetTaskAsync(taskId)).Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_task_is_not_found_and_left_unchanged()
    {
        var taskId = await suite.EnqueueOverRestAsync(Keys.DefaultOperator, TaskType, """{"secret":"default tenant"}""");

        var acme = suite.Queue(Keys.AcmeOperator);
        var get = await Assert.ThrowsAsync<RpcException>(async () => await acme.GetTaskAsync(new GetTaskRequest { TaskId = taskId }));
        Assert.Equal(StatusCode.NotFound, get.StatusCode);

        var cancel = await Assert.ThrowsAsync<RpcException>(async () =>
            await acme.CancelTaskAsync(new CancelTaskRequest { TaskId = taskId, Reason = "cross-tenant" }));
        Assert.Equal(StatusCode.NotFound, cancel.StatusCode);

        var acmeTasks = await suite.Queue(Keys.AcmeWorker).ListTasksAsync(new ListTasksRequest { Type = TaskType, PageSize = 1000 });
        Assert.DoesNotContain(acmeTasks.Tasks, t => t.Id == taskId);

        using var rest = await suite.RestAsync(HttpMethod.Get, $"/api/v1/tasks/{taskId}", Keys.AcmeWorker);
        Assert.Equal(HttpStatusCode.NotFound, rest.StatusCode);

        var task = await suite.GetTaskAsync(taskId);
        Assert.Equal(TaskStatus.Pending, task.Status);
        Assert.Equal("default", task.TenantId);
    }
}

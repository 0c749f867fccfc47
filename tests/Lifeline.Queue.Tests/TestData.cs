using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;

namespace Lifeline.Queue.Tests;

internal static class TestData
{
    public static TaskSpec WithWorkflow(TaskSpec spec, string workflowId)
    {
        spec.WorkflowId = workflowId;
        return spec;
    }

    public static TaskSpec Spec(string type, string payload = "{}", int priority = 0, int? maxRetries = null, int? timeoutSeconds = null,
        string? idempotencyKey = null, RetryPolicy? retry = null)
    {
        var spec = new TaskSpec { Type = type, Payload = payload, Priority = priority, IdempotencyKey = idempotencyKey ?? "" };
        if (maxRetries is { } m)
        {
            spec.MaxRetries = m;
        }
        if (timeoutSeconds is { } t)
        {
            spec.TimeoutSeconds = t;
        }
        if (retry is not null)
        {
            spec.RetryPolicy = retry;
        }
        return spec;
    }

    public static async Task<V1.Task> EnqueueAsync(this QueueService.QueueServiceClient client, TaskSpec spec) =>
        (await client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = spec })).Task;

    public static async Task<IReadOnlyList<V1.Task>> LeaseAsync(this QueueService.QueueServiceClient client, string worker, string type,
        int max = 1, double leaseSeconds = 30, double waitSeconds = 0)
    {
        var request = new LeaseTasksRequest
        {
            WorkerId = worker,
            MaxTasks = max,
            LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(leaseSeconds)),
            Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(waitSeconds)),
        };
        request.TaskTypes.Add(type);
        return (await client.LeaseTasksAsync(request)).Tasks;
    }

    public static string NewType(string prefix) => $"{prefix}.{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, 128)];

    /// <summary>Calls and expects a refusal with the given status; returns the rich status for more assertions.</summary>
    public static async Task<Google.Rpc.Status> RefusedAsync<T>(Func<Task<T>> call, StatusCode code)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        var status = ex.GetRpcStatus();
        Assert.NotNull(status);
        return status!;
    }

    public static ErrorInfo ErrorInfo(this Google.Rpc.Status status) => status.GetDetail<ErrorInfo>()!;

    public static BadRequest BadRequest(this Google.Rpc.Status status) => status.GetDetail<BadRequest>()!;
}

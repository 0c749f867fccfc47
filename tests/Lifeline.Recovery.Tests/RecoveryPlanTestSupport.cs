using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using QueueTask = Lifeline.Queue.V1.Task;

namespace Lifeline.Recovery.Tests;

/// <summary>Helpers of the recovery plan, disaster recovery and notification tests: real tasks in real states, refusals, polling.</summary>
internal static class RecoveryPlanTestSupport
{
    public static string NewType(string prefix) => $"{prefix}.{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    public static async Task<QueueTask> EnqueueAsync(this RecoveryEnvironment env, string type, int maxRetries = 3, string workflowId = "",
        string payload = "{\"n\":1}", int priority = 0)
    {
        var spec = new TaskSpec { Type = type, Payload = payload, MaxRetries = maxRetries, WorkflowId = workflowId, Priority = priority };
        return (await env.QueueClient().EnqueueTaskAsync(new EnqueueTaskRequest { Task = spec })).Task;
    }

    /// <summary>Registers a worker for <paramref name="type"/>, leases the task and fails it (retryable → dead letter when out of retries).</summary>
    public static async Task<QueueTask> LeaseAndFailAsync(this RecoveryEnvironment env, QueueTask task, bool retryable)
    {
        var worker = (await env.RegistryClient().RegisterWorkerAsync(new RegisterWorkerRequest
        {
            Name = $"plan-test-{Guid.NewGuid():N}",
            Type = WorkerType.Standalone,
            Capabilities = { task.Type },
        })).Worker;
        var lease = new LeaseTasksRequest
        {
            WorkerId = worker.Id,
            MaxTasks = 1,
            LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(60)),
            Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)),
        };
        lease.TaskTypes.Add(task.Type);
        var leased = Assert.Single((await env.QueueClient().LeaseTasksAsync(lease)).Tasks);
        Assert.Equal(task.Id, leased.Id);
        var failed = await env.QueueClient().FailTaskAsync(new FailTaskRequest
        {
            TaskId = task.Id,
            FencingToken = leased.FencingToken,
            Error = new ErrorDetail { Code = "UPSTREAM_DOWN", Message = "upstream answered 503", Retryable = retryable, Severity = Severity.Medium },
        });
        return failed.Task;
    }

    public static async Task<QueueTask> TaskAsync(this RecoveryEnvironment env, string id) =>
        (await env.QueueClient().GetTaskAsync(new GetTaskRequest { TaskId = id })).Task;

    public static async Task<int> HistoryCountAsync(this RecoveryEnvironment env, string id) =>
        (await env.QueueClient().GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = id, PageSize = 1000 })).Events.Count;

    public static ErrorContext Error(ErrorCategory category, Severity severity = Severity.Low, string code = "E_TEST", string taskId = "", string workflowId = "") =>
        new() { Code = code, Category = category, Severity = severity, Message = "something broke", TaskId = taskId, WorkflowId = workflowId };

    public static async Task<RecoveryPlan> CreatePlanAsync(this RecoveryPlanService.RecoveryPlanServiceClient client, ErrorContext error) =>
        (await client.CreateRecoveryPlanAsync(new CreateRecoveryPlanRequest { Error = error })).Plan;

    public static async Task<RecoveryPlan> ExecuteAsync(this RecoveryPlanService.RecoveryPlanServiceClient client, RecoveryPlan plan) =>
        (await client.ExecuteRecoveryPlanAsync(new ExecuteRecoveryPlanRequest { PlanId = plan.Id })).Plan;

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

    public static IReadOnlyList<string> Fields(this Google.Rpc.Status status) =>
        status.GetDetail<BadRequest>()!.FieldViolations.Select(v => v.Field).ToList();

    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> read, Func<T, bool> done, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            var value = await read();
            if (done(value))
            {
                return value;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"condition not reached in time; last value: {value}");
            }
            await Task.Delay(50);
        }
    }
}

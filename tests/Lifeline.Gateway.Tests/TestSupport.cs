using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.Gateway.Tests;

internal static class TestSupport
{
    public static async Task<RpcException> RefusedAsync(Func<Task> call, StatusCode expected)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(expected, ex.StatusCode);
        return ex;
    }

    public static string NewType(string prefix) => $"{prefix}.{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    public static EnqueueTaskRequest Enqueue(string type) => new() { Task = new TaskSpec { Type = type, MaxRetries = 0 } };

    public static RegisterWorkerRequest Registration(string capability) => new()
    {
        Name = "gw-" + Guid.NewGuid().ToString("N")[..12],
        Type = WorkerType.Standalone,
        Capabilities = { capability },
    };

    public static LeaseTasksRequest Lease(string workerId, string type) => new()
    {
        WorkerId = workerId,
        TaskTypes = { type },
        MaxTasks = 1,
        LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromSeconds(30)),
    };

    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(100);
        }

        return await condition();
    }
}

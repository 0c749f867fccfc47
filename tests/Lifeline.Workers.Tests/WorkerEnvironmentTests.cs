using Grpc.Core;
using Grpc.Net.Client;
using Lifeline.Queue.V1;

namespace Lifeline.Workers.Tests;

/// <summary>The environment itself: the gateway answers through the proxy, and a black hole really cuts workers off.</summary>
public sealed class WorkerEnvironmentTests(WorkerEnvironment env) : IClassFixture<WorkerEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Workers_reach_the_gateway_through_the_proxy_and_a_black_hole_cuts_them_off()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 1, stepMs: 1);
        using var channel = GrpcChannel.ForAddress(env.WorkerTarget);
        var worker = new QueueService.QueueServiceClient(channel);
        var auth = new Metadata { { "authorization", "Bearer " + tenant.WorkerKey } };
        var stats = await worker.GetQueueStatsAsync(new GetQueueStatsRequest { Type = "demo.steps" }, auth, DateTime.UtcNow.AddSeconds(10));
        Assert.Equal(3L, stats.Counts.Where(c => c.Status == Queue.V1.TaskStatus.Pending).Sum(c => c.Count));

        env.Proxy.BlackHole(true);
        try
        {
            var cut = await Assert.ThrowsAsync<RpcException>(async () =>
                await worker.GetQueueStatsAsync(new GetQueueStatsRequest { Type = "demo.steps" }, auth, DateTime.UtcNow.AddSeconds(1)));
            Assert.Equal(StatusCode.DeadlineExceeded, cut.StatusCode);
            // The operator's path does not go through the proxy.
            Assert.Equal(3, (await tenant.WaitUntilFinalAsync(ids, TimeSpan.Zero)).Count(t => t.Status == Queue.V1.TaskStatus.Pending));
        }
        finally
        {
            env.Proxy.BlackHole(false);
        }
    }
}

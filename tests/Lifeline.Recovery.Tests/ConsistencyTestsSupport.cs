using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Planting helpers for the consistency tests. Each test checks its own tenants through its own recovery
/// instance (a standby: checks and fixes run on any instance), so the leader's in-flight recovery, which
/// covers other tenants, never repairs a planted problem before the check sees it.
/// </summary>
internal sealed class ConsistencyScene(RecoveryEnvironment env, string tenant)
{
    public string Tenant { get; } = tenant;
    public ServiceHost Checker { get; private set; } = null!;
    public QueueService.QueueServiceClient Queue => env.QueueClient(Tenant);
    public RegistryService.RegistryServiceClient Registry => env.RegistryClient(Tenant);
    public ConsistencyService.ConsistencyServiceClient Consistency => env.ConsistencyClient(Checker);

    public static async Task<ConsistencyScene> StartAsync(RecoveryEnvironment env, string prefix, IDictionary<string, string?>? settings = null)
    {
        var scene = new ConsistencyScene(env, $"{prefix}-{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 9, 64)]);
        var config = new Dictionary<string, string?>
        {
            ["Recovery:Tenants:0"] = scene.Tenant,
            ["Recovery:Tenants:1"] = scene.Tenant + "-b",
        };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
        scene.Checker = await env.StartRecoveryAsync(config);
        return scene;
    }

    public async Task<Worker> RegisterAsync(string capability) => (await Registry.RegisterWorkerAsync(new RegisterWorkerRequest
    {
        Name = $"w-{Guid.NewGuid():N}"[..16],
        Type = WorkerType.Standalone,
        Capabilities = { capability },
    })).Worker;

    /// <summary>Enqueues a task of a new type, leases it to the worker (10 minute lease) and starts it.</summary>
    public async Task<Queue.V1.Task> RunningTaskAsync(Worker worker, string type, int timeoutSeconds = 3600)
    {
        await Queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = type, Payload = "{}", TimeoutSeconds = timeoutSeconds } });
        var lease = new LeaseTasksRequest { WorkerId = worker.Id, MaxTasks = 1, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromMinutes(10)), Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)) };
        lease.TaskTypes.Add(type);
        var leased = Assert.Single((await Queue.LeaseTasksAsync(lease)).Tasks);
        return (await Queue.StartTaskAsync(new StartTaskRequest { TaskId = leased.Id, FencingToken = leased.FencingToken })).Task;
    }

    public async Task<CheckResult> RunAsync(string check) => (await Consistency.RunCheckAsync(new RunCheckRequest { Name = check })).Result;

    /// <summary>Runs a check until it reports an issue (heartbeats reach PostgreSQL in coalesced batches).</summary>
    public async Task<CheckResult> RunUntilFoundAsync(string check)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var result = await RunAsync(check);
            if (result.Issues.Count > 0 || DateTime.UtcNow > deadline)
            {
                return result;
            }
            await System.Threading.Tasks.Task.Delay(200);
        }
    }

    public async Task<FixIssuesResponse> FixAsync(CheckResult result, bool dryRun = false) =>
        await Consistency.FixIssuesAsync(new FixIssuesRequest { RunId = result.RunId, DryRun = dryRun });

    public static async Task<Google.Rpc.Status> RefusedAsync<T>(Func<Task<T>> call, StatusCode code)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        return ex.GetRpcStatus()!;
    }
}

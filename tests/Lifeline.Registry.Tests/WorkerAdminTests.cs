using Grpc.Core;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;

namespace Lifeline.Registry.Tests;

/// <summary>The admin RPCs the recovery service's consistency checks use: SendWorkerCommand and ReconcileWorkers.</summary>
public sealed class WorkerAdminTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private RegistryService.RegistryServiceClient Client(string tenant = "default") => new(env.Registry.ForTenant(tenant));

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task SendWorkerCommand_delivers_a_cancel_with_the_next_heartbeat()
    {
        var client = Client();
        var worker = await client.RegisterAsync(TestData.Registration());
        var task = Guid.NewGuid().ToString();
        var command = new WorkerCommand { CancelTask = new CancelTaskCommand { TaskId = task, Reason = "not yours" } };

        var sent = await client.SendWorkerCommandAsync(new SendWorkerCommandRequest { WorkerId = worker.Id, Command = command });

        Assert.Equal(worker.Id, sent.Worker.Id);
        var beat = await client.BeatAsync(worker);
        var received = Assert.Single(beat.Commands);
        Assert.Equal(task, received.CancelTask.TaskId);
        Assert.Equal("not yours", received.CancelTask.Reason);
        Assert.Empty((await client.BeatAsync(worker)).Commands); // delivered once
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task SendWorkerCommand_drain_drains_the_worker_like_DrainWorker()
    {
        var client = Client();
        var worker = await client.RegisterAsync(TestData.Registration());

        var sent = await client.SendWorkerCommandAsync(new SendWorkerCommandRequest
        {
            WorkerId = worker.Id,
            Command = new WorkerCommand { Drain = new DrainCommand { Reason = "deploy" } },
        });

        Assert.Equal(WorkerStatus.Draining, sent.Worker.Status);
        Assert.Equal("draining", await env.ScalarAsync<string>("SELECT status FROM workers WHERE id = @id", ("id", Guid.Parse(worker.Id))));
        Assert.Contains((await client.BeatAsync(worker)).Commands, c => c.Drain?.Reason == "deploy");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task SendWorkerCommand_refuses_bad_input_unknown_and_deregistered_workers()
    {
        var client = Client();
        var bad = await TestData.RefusedAsync(() => client.SendWorkerCommandAsync(new SendWorkerCommandRequest { WorkerId = "nope" }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["worker_id", "command"], bad.BadRequest().FieldViolations.Select(f => f.Field));

        var badTask = await TestData.RefusedAsync(() => client.SendWorkerCommandAsync(new SendWorkerCommandRequest
        {
            WorkerId = Guid.NewGuid().ToString(),
            Command = new WorkerCommand { CancelTask = new CancelTaskCommand { TaskId = "x", Reason = new string('r', 1025) } },
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["command.cancel_task.task_id", "command.cancel_task.reason"], badTask.BadRequest().FieldViolations.Select(f => f.Field));

        var cancel = new WorkerCommand { CancelTask = new CancelTaskCommand { TaskId = Guid.NewGuid().ToString() } };
        var unknown = await TestData.RefusedAsync(() => client.SendWorkerCommandAsync(new SendWorkerCommandRequest
        {
            WorkerId = Guid.NewGuid().ToString(), Command = cancel,
        }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("WORKER_NOT_FOUND", unknown.ErrorInfo().Reason);

        var worker = await client.RegisterAsync(TestData.Registration());
        await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });
        var gone = await TestData.RefusedAsync(() => client.SendWorkerCommandAsync(new SendWorkerCommandRequest
        {
            WorkerId = worker.Id, Command = cancel,
        }).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Equal("WORKER_DEREGISTERED", gone.ErrorInfo().Reason);

        // Another tenant's worker is NOT_FOUND.
        var other = await client.RegisterAsync(TestData.Registration());
        await TestData.RefusedAsync(() => Client("acme").SendWorkerCommandAsync(new SendWorkerCommandRequest
        {
            WorkerId = other.Id, Command = cancel,
        }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task ReconcileWorkers_reports_a_worker_alive_in_PostgreSQL_without_a_heartbeat_and_marks_it_lost_unless_dry_run()
    {
        const string tenant = "reconcile-lost";
        var client = Client(tenant);
        var healthy = await client.RegisterAsync(TestData.Registration());
        await using var beating = client.KeepBeating(healthy);
        var worker = await client.RegisterAsync(TestData.Registration());
        await PlantMissingHeartbeatAsync(tenant, worker.Id);

        var dry = await client.ReconcileWorkersAsync(new ReconcileWorkersRequest { DryRun = true });

        Assert.Equal(2, dry.Examined);
        var found = Assert.Single(dry.Disagreements);
        Assert.Equal(worker.Id, found.WorkerId);
        Assert.Equal(WorkerStatus.Online, found.PostgresStatus);
        Assert.False(found.AliveInRedis);
        Assert.True(found.InRedis);
        Assert.Equal(ReconcileAction.MarkLost, found.Action);
        Assert.False(found.Applied);
        Assert.Equal("online", await StatusAsync(worker.Id));

        var applied = await client.ReconcileWorkersAsync(new ReconcileWorkersRequest { WorkerId = worker.Id });

        Assert.True(Assert.Single(applied.Disagreements).Applied);
        Assert.Equal("offline", await StatusAsync(worker.Id));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM worker_events WHERE worker_id = @id AND event_type = 'lost'",
            ("id", Guid.Parse(worker.Id))));
        Assert.Empty((await client.ReconcileWorkersAsync(new ReconcileWorkersRequest { DryRun = true })).Disagreements);
        Assert.Equal("online", await StatusAsync(healthy.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task ReconcileWorkers_rewrites_a_worker_Redis_lost_entirely()
    {
        const string tenant = "reconcile-mirror";
        var client = Client(tenant);
        var worker = await client.RegisterAsync(TestData.Registration());
        await PlantMissingHeartbeatAsync(tenant, worker.Id);
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        await redis.GetDatabase().KeyDeleteAsync(WorkerMirror.WorkerKey(tenant, worker.Id));

        var result = await client.ReconcileWorkersAsync(new ReconcileWorkersRequest());

        var found = Assert.Single(result.Disagreements);
        Assert.False(found.InRedis);
        Assert.Equal(ReconcileAction.RewriteMirror, found.Action);
        Assert.True(found.Applied);
        Assert.True(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.WorkerKey(tenant, worker.Id)));
        Assert.True(await redis.GetDatabase().KeyExistsAsync(WorkerMirror.AliveKey(tenant, worker.Id)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task ReconcileWorkers_refuses_a_malformed_worker_id()
    {
        var status = await TestData.RefusedAsync(() => Client().ReconcileWorkersAsync(new ReconcileWorkersRequest { WorkerId = "w-1" }).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal("worker_id", Assert.Single(status.BadRequest().FieldViolations).Field);
    }

    /// <summary>
    /// PostgreSQL keeps the worker online while Redis has no heartbeat for it, and neither the lapse detector (no
    /// deadline entry) nor the periodic reconciliation (a PostgreSQL heartbeat in the future) will notice on its own.
    /// </summary>
    private async Task PlantMissingHeartbeatAsync(string tenant, string workerId)
    {
        await env.ScalarAsync<int>("UPDATE workers SET last_heartbeat_at = now() + interval '1 hour' WHERE id = @id RETURNING 1", ("id", Guid.Parse(workerId)));
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        var db = redis.GetDatabase();
        await db.KeyDeleteAsync(WorkerMirror.AliveKey(tenant, workerId));
        await db.SortedSetRemoveAsync(WorkerMirror.DeadlinesKey(tenant), $"{tenant}/{workerId}");
    }

    private Task<string> StatusAsync(string workerId) => env.ScalarAsync<string>("SELECT status FROM workers WHERE id = @id", ("id", Guid.Parse(workerId)));
}

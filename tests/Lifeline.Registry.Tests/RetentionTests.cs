using Google.Protobuf.WellKnownTypes;
using Lifeline.Registry.Maintenance;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The retention sweep, called explicitly on an instance whose retention age is 3 s (its own timer is a
/// day, so only these calls sweep); its breakers stay open for 10 minutes, so "open" is stable.
/// </summary>
public sealed class RetentionTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    // Long enough that rows made just before a sweep are surely younger, even on a loaded machine.
    private static readonly TimeSpan Age = TimeSpan.FromSeconds(3);

    private Task<ServiceHost> SweepingRegistryAsync() => env.StartRegistryAsync(new Dictionary<string, string?>
    {
        ["Registry:RetentionAge"] = "00:00:03",
        ["Registry:RetentionInterval"] = "1.00:00:00",
        ["Registry:BreakerOpenDuration"] = "00:10:00",
    });

    private static string NewTenant() => $"ret-{Guid.NewGuid():N}"[..20];

    private static Task<(int Breakers, int Workers)> SweepAsync(ServiceHost host) =>
        host.App.Services.GetRequiredService<RetentionSweeper>().SweepAsync(CancellationToken.None);

    private Task<long> BreakerRowsAsync(string workerId) =>
        env.ScalarAsync<long>("SELECT count(*) FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(workerId)));

    private Task<long> WorkerRowsAsync(string workerId) =>
        env.ScalarAsync<long>("SELECT count(*) FROM workers WHERE id = @id", ("id", Guid.Parse(workerId)));

    private static TaskOutcome Failure(string workerId) => new()
    {
        OutcomeId = Guid.NewGuid().ToString(), WorkerId = workerId, TaskId = Guid.NewGuid().ToString(), TaskType = "email.send",
        ErrorCode = "BOOM",
    };

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Closed_breakers_older_than_the_retention_age_are_removed_and_open_ones_are_kept()
    {
        var host = await SweepingRegistryAsync();
        var client = host.Registry(NewTenant());
        var oldClosed = await client.RegisterAsync(Registration());
        var open = await client.RegisterAsync(Registration());
        await client.RecordTaskOutcomesAsync(new RecordTaskOutcomesRequest { Outcomes = { Failure(open.Id), Failure(open.Id), Failure(open.Id) } });
        await using var beatOld = client.KeepBeating(oldClosed);
        await using var beatOpen = client.KeepBeating(open);
        await Task.Delay(Age + TimeSpan.FromMilliseconds(300));
        var newClosed = await client.RegisterAsync(Registration());
        Assert.Equal(1L, await BreakerRowsAsync(oldClosed.Id));

        var (breakers, _) = await SweepAsync(host);

        Assert.True(breakers >= 1);
        Assert.Equal(0L, await BreakerRowsAsync(oldClosed.Id));
        Assert.Equal(1L, await BreakerRowsAsync(newClosed.Id)); // younger than the age
        Assert.Equal("open|3", await env.ScalarAsync<string>(
            "SELECT concat_ws('|', state, consecutive_failures) FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(open.Id))));

        // A removed breaker reads as closed; the worker itself is untouched, and its breaker works as before.
        var read = (await client.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = oldClosed.Id })).CircuitBreaker;
        Assert.Equal(CircuitState.Closed, read.State);
        Assert.Equal(0, read.ConsecutiveFailures);
        Assert.Equal(3, read.FailureThreshold);
        Assert.Equal(1L, await WorkerRowsAsync(oldClosed.Id));
        await client.RecordTaskOutcomesAsync(new RecordTaskOutcomesRequest { Outcomes = { Failure(oldClosed.Id), Failure(oldClosed.Id), Failure(oldClosed.Id) } });
        Assert.Equal(CircuitState.Open, (await client.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = oldClosed.Id })).CircuitBreaker.State);
        Assert.Equal(1L, await BreakerRowsAsync(oldClosed.Id));
        // Beating stops before the host does: a beat at a stopped host would fail the loop (and the test).
        await beatOld.DisposeAsync();
        await beatOpen.DisposeAsync();
        await host.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Workers_offline_or_deregistered_longer_than_the_retention_age_are_removed_with_their_redis_entry_and_online_ones_kept()
    {
        var host = await SweepingRegistryAsync();
        var tenant = NewTenant();
        var client = host.Registry(tenant);
        var online = await client.RegisterAsync(Registration());
        var deregistered = await client.RegisterAsync(Registration());
        var lost = await client.RegisterAsync(Registration());
        await using var beating = client.KeepBeating(online);
        await client.RecordTaskOutcomesAsync(new RecordTaskOutcomesRequest { Outcomes = { Failure(deregistered.Id), Failure(lost.Id) } });
        await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = deregistered.Id });

        // The silent one is lost after its TTL (3 s), then stays offline for longer than the age.
        Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(lost.Id), "lost") == 1, TimeSpan.FromSeconds(8)));
        await Task.Delay(Age + TimeSpan.FromMilliseconds(300));
        var justDeregistered = await client.RegisterAsync(Registration());
        await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = justDeregistered.Id });
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        var db = redis.GetDatabase();
        Assert.True(await db.KeyExistsAsync(WorkerMirror.WorkerKey(tenant, deregistered.Id)));
        Assert.True(await db.KeyExistsAsync(WorkerMirror.WorkerKey(tenant, lost.Id)));

        var (_, workers) = await SweepAsync(host);

        Assert.True(workers >= 2);
        foreach (var gone in new[] { deregistered, lost })
        {
            var id = Guid.Parse(gone.Id);
            Assert.Equal(0L, await WorkerRowsAsync(gone.Id));
            Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE worker_id = @id", ("id", id)));
            Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM worker_stats WHERE worker_id = @id", ("id", id)));
            Assert.Equal(0L, await BreakerRowsAsync(gone.Id));
            Assert.False(await db.KeyExistsAsync(WorkerMirror.WorkerKey(tenant, gone.Id)));
            Assert.False(await db.KeyExistsAsync(WorkerMirror.AliveKey(tenant, gone.Id)));
            Assert.Null(await db.SortedSetScoreAsync(WorkerMirror.DeadlinesKey(tenant), $"{tenant}/{gone.Id}"));
        }
        Assert.Equal(1L, await WorkerRowsAsync(online.Id));
        Assert.True(await db.KeyExistsAsync(WorkerMirror.WorkerKey(tenant, online.Id)));
        Assert.Equal(1L, await WorkerRowsAsync(justDeregistered.Id)); // deregistered, but not for long enough
        Assert.True(await db.KeyExistsAsync(WorkerMirror.WorkerKey(tenant, justDeregistered.Id)));
        Assert.Equal(new[] { online.Id, justDeregistered.Id }.Order(StringComparer.Ordinal),
            (await client.ListWorkersAsync(new ListWorkersRequest())).Workers.Select(w => w.Id).Order(StringComparer.Ordinal));

        // The online worker keeps working normally.
        Assert.Equal(WorkerStatus.Online, (await client.BeatAsync(online)).Status);
        await beating.DisposeAsync();
        await host.StopAsync();
    }
}

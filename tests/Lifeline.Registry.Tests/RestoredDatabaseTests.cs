using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StackExchange.Redis;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The registry database restored from a backup taken before a worker registered: PostgreSQL no longer knows
/// the worker, the Redis mirror still does (its own class: it deletes rows behind the registry's back).
/// </summary>
public sealed class RestoredDatabaseTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    [Fact(Timeout = 60_000)]
    public async Task A_lapse_of_a_worker_postgres_no_longer_knows_drops_it_from_the_mirror_and_the_registry_keeps_serving()
    {
        var client = env.Registry.Registry();
        var forgotten = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker;
        var id = Guid.Parse(forgotten.Id);

        // What the restore leaves: no row (nor its breaker, stats or events), the mirror entry and its heartbeat deadline.
        Assert.Equal(1, await env.ScalarAsync<int>("WITH gone AS (DELETE FROM workers WHERE id = @id RETURNING 1) SELECT count(*)::int FROM gone", ("id", id)));

        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        var db = redis.GetDatabase();
        Assert.True(await db.KeyExistsAsync(WorkerMirror.WorkerKey(forgotten.TenantId, forgotten.Id)));

        // Its heartbeat lapses (TTL 3 s): the stray entry goes, and nothing is announced for a worker nobody knows.
        Assert.True(await EventuallyAsync(async () => !await db.KeyExistsAsync(WorkerMirror.WorkerKey(forgotten.TenantId, forgotten.Id)),
            TimeSpan.FromSeconds(15)), "the stray mirror entry was not removed");
        Assert.Null(await db.SortedSetScoreAsync(WorkerMirror.DeadlinesKey(forgotten.TenantId), $"{forgotten.TenantId}/{forgotten.Id}"));
        Assert.False(await db.KeyExistsAsync(WorkerMirror.AliveKey(forgotten.TenantId, forgotten.Id)));
        Assert.Equal(0, await env.CountEventsAsync(id, "lost"));

        // A few more passes and reconciliations later the registry still runs and answers.
        await Task.Delay(TimeSpan.FromSeconds(2));
        var lifetime = env.Registry.App.Services.GetRequiredService<IHostApplicationLifetime>();
        Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the registry host stopped");
        var other = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker;
        var answered = await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = other.Id }, deadline: Deadline());
        Assert.Equal(WorkerStatus.Online, answered.Worker.Status);
    }
}
